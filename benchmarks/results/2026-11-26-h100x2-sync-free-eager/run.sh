#!/usr/bin/env bash
# Device call 51 (2 GPUs; rows of one stream are comparable): eager TP after the step without host reads.
# Qwen2-1.5B shapes, seq 4096, GB 8, tp=2, fp32 master weights, eager, full AC, micro-batch 1: with
# --train.cudagraphs=true, the working tree ("new", = main 7280a47's code) against main 3110d64 ("base",
# .carry/base); then new without graphs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w51; rm -rf $W; mkdir -p $W; END=${END:-285}
BASE=$PWD/.carry/base
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=4
row a new-graphs qwen2-1.5b 4096 2 8 sw-full-eager-graphs 90 ""
ROOT=$BASE row a base-graphs qwen2-1.5b 4096 2 8 sw-full-eager-graphs 90 ""
row a new-eager qwen2-1.5b 4096 2 8 sw-full-eager 90 ""
cp .carry/run51.sh $OUT/run.sh
summarize $OUT
