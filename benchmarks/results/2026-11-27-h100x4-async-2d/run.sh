#!/usr/bin/env bash
# Device call 101 (4 GPUs), session 24, main 6aee977: async TP in the layouts it has never been timed in on GPUs,
# dp_shard=2 x tp=2 and tp=4, plain against async TP, and dp_shard=4 beside them. Llama-3-8B shapes, bf16 weights,
# no checkpointing, micro-batch 2 (8,192 tokens), seq 4096, GB 8, compiled, warmup 2, median of 3.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site WARMUP=2 STEPS=3
W=/tmp/w101; rm -rf $W; mkdir -p $W; END=${END:-570}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
A=--parallel.async_tp=true B=--model.dtype=bfloat16
row c dp2xtp2-plain llama3-8b 4096 2 8 sw-none-compile-mb2 140 "$B --parallel.dp_shard=2"
row c dp2xtp2-async llama3-8b 4096 2 8 sw-none-compile-mb2 140 "$B --parallel.dp_shard=2 $A"
row c tp4-async llama3-8b 4096 4 8 sw-none-compile-mb2 140 "$B $A"
row c tp4-plain llama3-8b 4096 4 8 sw-none-compile-mb2 140 "$B"
row c dp4 llama3-8b 4096 1 8 sw-none-compile-mb2 140 "$B"
cp .carry/run101.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
