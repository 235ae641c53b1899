#!/usr/bin/env bash
# Device call 64 (2 GPUs): the TP issue's own Qwen2-1.5B table on main as it stands, every row in one call: seq 4096,
# GB 8, bf16 compute; dp_shard=2 and tp=2 compiled without checkpointing at micro-batch 4 (tp=2 also with async TP and
# at micro-batch 8), tp=2 eager with full checkpointing at micro-batch 1 (also as CUDA graphs), and beside it the
# design note's recipe and transformers' tp_plan="auto" at the same settings.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-hf/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w64; rm -rf $W; mkdir -p $W; END=${END:-560}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
row a tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 80 ""
row a tp2-async qwen2-1.5b 4096 2 8 sw-none-compile-mb4-asynctp 90 ""
export STEPS=4
row a tp2-eager qwen2-1.5b 4096 2 8 sw-full-eager 90 ""
row a tp2-recipe qwen2-1.5b 4096 2 8 recipe-eager 110 ""
row a tp2-hf qwen2-1.5b 4096 2 8 hf-tp-plan-ac 150 ""
row a tp2-graphs qwen2-1.5b 4096 2 8 sw-full-eager-graphs 90 ""
export STEPS=6
row a tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 80 ""
cp .carry/run64.sh $OUT/run.sh
summarize $OUT
