#!/usr/bin/env bash
# Device call 128 (2 GPUs), session 31: Llama-3-8B shapes side by side with TorchTitan 0.2.2 on main 162c45b (issue 9's
# "shardwise >= 1.0x TorchTitan in each layout"; last measured in session 15, before flex, the merge pass and the
# collector): seq 4096, GB 8, pure bf16 on both sides, compiled, no checkpointing, each trainer's defaults;
# dp_shard=2 micro-batch 1 and tp=2 micro-batch 2, warmup 2, 3 timed steps. Then, with the time left, issue 9's
# transformers tp_plan row (Qwen2-1.5B, eager, full AC, micro-batch 1), which ran out its 70 s in call 127.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w128; rm -rf $W; mkdir -p $W; END=570
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, torchtitan, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
export WARMUP=2 STEPS=3 TITAN_EXTRA="--dtype bfloat16"
row a 8b-dp2 llama3-8b 4096 1 8 sw-none-compile 125 "--model.dtype=bfloat16"
row a 8b-dp2 llama3-8b 4096 1 8 titan-none-compile 125 ""
row a 8b-tp2 llama3-8b 4096 2 8 sw-none-compile-mb2 125 "--model.dtype=bfloat16"
row a 8b-tp2 llama3-8b 4096 2 8 titan-none-compile-mb2 125 ""
export WARMUP=2 STEPS=4
row a hf qwen2-1.5b 4096 2 8 hf-tp-plan-ac 75 ""
cp .carry/run128.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
