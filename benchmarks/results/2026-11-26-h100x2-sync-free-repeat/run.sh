#!/usr/bin/env bash
# Device call 50 (2 GPUs; rows of one stream are comparable), the tree of calls 48-49: call 49's Llama-3-8B
# dp_shard=2 pair again in the other order (TorchTitan first; seq 4096, GB 8, pure bf16, compiled, no AC,
# micro-batch 1, blocks kept gathered), then Qwen2-1.5B plain tp=2 mb 8 and dp_shard=2 mb 4.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w50; rm -rf $W; mkdir -p $W; END=${END:-400}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=3 TITAN_EXTRA="--dtype bfloat16 --titan-arg=--parallelism.fsdp_reshard_after_forward=never"
row a 8b-dp2-keep-titan llama3-8b 4096 1 8 titan-none-compile 120 ""
row a 8b-dp2-keep llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16 --parallel.reshard_after_forward=false"
export WARMUP=2 STEPS=6
row a tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 80 ""
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
cp .carry/run50.sh $OUT/run.sh
summarize $OUT
