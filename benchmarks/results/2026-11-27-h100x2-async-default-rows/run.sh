#!/usr/bin/env bash
# Device call 92 (2 GPUs), session 22, main a7df029: should async TP be on by default? Plain tp=2 against
# --parallel.async_tp=true in pairs of rows (one call, alternating order): Qwen2-1.5B micro-batch 8 (the row,
# what the plan recommends), Llama-3-8B bf16 weights without checkpointing (micro-batch 2) and Llama-3-8B fp32 master
# weights with full checkpointing (micro-batch 1, the 8B row); seq 4096, GB 8, compiled, warmup 2, median of 3.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site WARMUP=2 STEPS=3
W=/tmp/w92; rm -rf $W; mkdir -p $W; END=${END:-545}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
A=--parallel.async_tp=true
row c q-plain qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 ""
row c q-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 "$A"
row c 8b-none-async llama3-8b 4096 2 8 sw-none-compile-mb2 130 "--model.dtype=bfloat16 $A"
row c 8b-none-plain llama3-8b 4096 2 8 sw-none-compile-mb2 130 "--model.dtype=bfloat16"
row c 8b-full-plain llama3-8b 4096 2 8 sw-full-compile 130 ""
row c 8b-full-async llama3-8b 4096 2 8 sw-full-compile 130 "$A"
cp .carry/run92.sh $OUT/run.sh
summarize $OUT
