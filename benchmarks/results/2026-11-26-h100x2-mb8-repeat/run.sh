#!/usr/bin/env bash
# Device call 46 (2 GPUs; rows of one stream are comparable), the tree of calls 44-45: the repeat of call 45's
# Qwen2-1.5B pair, tp=2 at micro-batch 8 with async TP against dp_shard=2 at micro-batch 4 (seq 4096, GB 8, fp32
# master weights, compiled, no AC), the tp=2 row before and after the dp_shard=2 one.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w46; rm -rf $W; mkdir -p $W; END=${END:-200}
source benchmarks/stream_rows.sh
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
row a tp2-mb8-async-1 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 95 "--parallel.async_tp=true"
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 85 ""
row a tp2-mb8-async-2 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 95 "--parallel.async_tp=true"
summarize $OUT
