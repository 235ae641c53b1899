#!/usr/bin/env bash
# Device call 69 (2 GPUs): the "try compiling the whole model": tp=2 with the whole forward (embedding to
# logits) as one compiled graph (experiment patch whole.patch, env SHARDWISE_X_WHOLE=1, fullgraph) against compiled
# blocks, at micro-batch 8 (the plan's pick) and with async TP; dp_shard=2 for the ratio. Qwen2-1.5B, seq 4096, GB 8.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w69; rm -rf $W; mkdir -p $W; END=${END:-580}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
export SHARDWISE_X_WHOLE=1 SHARDWISE_X_FULLGRAPH=1
row a tp2-mb8-whole qwen2-1.5b 4096 2 8 sw-none-compile-mb8 240 ""
unset SHARDWISE_X_WHOLE SHARDWISE_X_FULLGRAPH
row a tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 80 ""
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
export SHARDWISE_X_WHOLE=1 SHARDWISE_X_FULLGRAPH=1
row a tp2-mb8-whole-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 170 "--parallel.async_tp=true"
cp .carry/run69.sh .carry/whole.patch $OUT/
summarize $OUT
