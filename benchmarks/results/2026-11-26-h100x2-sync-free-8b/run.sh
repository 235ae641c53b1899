#!/usr/bin/env bash
# Device call 49 (2 GPUs; rows of one stream are comparable), the working tree of call 48 (the step without host
# reads): the Qwen2-1.5B pair again (dp_shard=2 mb 4; tp=2 mb 8 async TP; seq 4096, GB 8, fp32 master weights,
# compiled, no AC); then Llama-3-8B dp_shard=2 beside TorchTitan 0.2.2 (seq 4096, GB 8, pure bf16, compiled, no AC,
# micro-batch 1, blocks kept gathered on both sides).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w49; rm -rf $W; mkdir -p $W; END=${END:-575}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 90 ""
row a tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 95 "--parallel.async_tp=true"
export WARMUP=2 STEPS=3 TITAN_EXTRA="--dtype bfloat16 --titan-arg=--parallelism.fsdp_reshard_after_forward=never"
row a 8b-dp2-keep llama3-8b 4096 1 8 sw-none-compile 180 "--model.dtype=bfloat16 --parallel.reshard_after_forward=false"
row a 8b-dp2-keep-titan llama3-8b 4096 1 8 titan-none-compile 195 ""
cp .carry/run49.sh $OUT/run.sh
summarize $OUT
