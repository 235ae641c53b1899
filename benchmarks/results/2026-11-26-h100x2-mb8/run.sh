#!/usr/bin/env bash
# Device call 45 (2 GPUs; rows of one stream are comparable), the working tree of call 44 (loss._TargetLogit).
# Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no AC: tp=2 at micro-batch 8 (one micro-batch a
# step), with and without async TP, against dp_shard=2 (micro-batch 4, its largest at GB 8); then Llama-3-8B shapes
# at tp=2 (bf16 weights): no AC at micro-batch 2, full AC at micro-batch 1 (peaks for tests/test_plan.py).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w45; rm -rf $W; mkdir -p $W; END=${END:-420}
source benchmarks/stream_rows.sh
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 90 ""
row a tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 100 "--parallel.async_tp=true"
row a tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 100 ""
WARMUP=1 STEPS=3 row a 8b-tp2-bf16-noac llama3-8b 4096 2 8 sw-none-compile-mb2 130 "--model.dtype=bfloat16"
WARMUP=1 STEPS=2 row a 8b-tp2-bf16-full llama3-8b 4096 2 8 sw-full-compile 110 "--model.dtype=bfloat16"
summarize $OUT
