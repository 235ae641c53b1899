#!/usr/bin/env bash
# Device call 61 (2 GPUs; rows of one stream are comparable): with blocks freed after forward
# (--parallel.reshard_after_forward=true, what auto picks where keeping them does not fit), the root and the last block
# now stay gathered through the step's micro-batches: peak memory and step time, working tree (main 4849122, "new")
# against main 44fd74c ("base", .carry/base). Llama-3-8B shapes dp_shard=2, pure bf16, compiled, no AC, micro-batch 1,
# GB 8 (4 micro-batches per rank).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w61; rm -rf $W; mkdir -p $W; END=${END:-400}
BASE=$PWD/.carry/base
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=3
A="--model.dtype=bfloat16 --parallel.reshard_after_forward=true"
row a 8b-true-new llama3-8b 4096 1 8 sw-none-compile 100 "$A"
ROOT=$BASE row a 8b-true-base llama3-8b 4096 1 8 sw-none-compile 100 "$A"
cp .carry/run61.sh $OUT/run.sh
summarize $OUT
