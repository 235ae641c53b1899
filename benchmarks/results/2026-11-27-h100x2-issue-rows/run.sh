#!/usr/bin/env bash
# Device call 94 (2 GPUs), session 22, main a7df029: the issue table's Qwen2-1.5B rows on 2xH100: dp_shard=2 micro-batch 4 (defaults), tp=2 micro-batch 8 plain and async.
# --parallel.async_tp=true in pairs of rows (one call, alternating order): Qwen2-1.5B micro-batch 8 (the row,
# what the plan recommends), Llama-3-8B bf16 weights without checkpointing (micro-batch 2) and Llama-3-8B fp32 master
# weights with full checkpointing (micro-batch 1, the 8B row); seq 4096, GB 8, compiled, warmup 2, median of 3.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site WARMUP=2 STEPS=3
W=/tmp/w94; rm -rf $W; mkdir -p $W; END=${END:-270}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
A=--parallel.async_tp=true
row c dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
row c q-plain qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 ""
row c q-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 "$A"
cp .carry/run94.sh $OUT/run.sh
summarize $OUT
