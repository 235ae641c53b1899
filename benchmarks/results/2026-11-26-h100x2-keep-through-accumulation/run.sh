#!/usr/bin/env bash
# Device call 57 (2 GPUs; rows of one stream are comparable): FSDP units kept gathered from forward to backward also
# stay gathered through a step's micro-batches (working tree, "new") against main 44fd74c ("base", .carry/base).
# Llama-3-8B shapes dp_shard=2 (pure bf16, compiled, no AC, micro-batch 1, GB 8: 4 micro-batches per rank) with
# each tree's defaults, and TorchTitan's; Qwen2-1.5B shapes dp_shard=2 at GB 16 (2 micro-batches of 4 per rank).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w57; rm -rf $W; mkdir -p $W; END=${END:-565}
BASE=$PWD/.carry/base
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=3 TITAN_EXTRA="--dtype bfloat16"
row a 8b-new llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16"
ROOT=$BASE row a 8b-base llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16"
row a 8b-titan llama3-8b 4096 1 8 titan-none-compile 115 ""
export WARMUP=2 STEPS=6
row a 15b-gb16-new qwen2-1.5b 4096 1 16 sw-none-compile-mb4 80 ""
ROOT=$BASE row a 15b-gb16-base qwen2-1.5b 4096 1 16 sw-none-compile-mb4 80 ""
cp .carry/run57.sh $OUT/run.sh
summarize $OUT
