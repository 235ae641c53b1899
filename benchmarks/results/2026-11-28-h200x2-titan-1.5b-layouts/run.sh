#!/usr/bin/env bash
# Device call 138 (2 GPUs), session 33: the rest of issue 9's side by side at its own shapes, on the same main as
# calls 136-137. Qwen2-1.5B sizes, seq 4096, GB 8, compiled, no checkpointing: dp_shard=2 micro-batch 4 for both
# trainers (FSDP2, bf16 compute, fp32 master weights and gradient reduction on both sides), and TorchTitan at tp=2
# micro-batch 4 (two micro-batches a step), plain and async TP, in case its micro-batch 8 of call 137 was not its
# best, beside shardwise tp=2 at its default micro-batch 8 (the issue asks >= 0.9x dp_shard=2 in one call);
# warmup 2, median of 10.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w138; rm -rf $W; mkdir -p $W; END=575
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, torchtitan, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
export WARMUP=2 STEPS=10
row a q-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 130 ""
row a q-dp2 qwen2-1.5b 4096 1 8 titan-none-compile-mb4 130 ""
row a q-tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 130 ""
row a q-tp2 qwen2-1.5b 4096 2 8 titan-none-compile-mb4 130 ""
row a q-tp2 qwen2-1.5b 4096 2 8 titan-none-compile-mb4-asynctp 130 ""
cp .carry/run138.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
