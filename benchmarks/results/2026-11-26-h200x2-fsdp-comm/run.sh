#!/usr/bin/env bash
# Device call 52 (2 GPUs; rows of one stream are comparable): FSDP's collectives off the SMs at dp_shard=2.
# Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no AC, micro-batch 4: main 69d7b14 plus an
# experiment hook (SHARDWISE_X_FSDP_SYMM=1: every FSDP unit's all-gather buffers in NCCL symmetric memory,
# set_symm_mem_for_comm; =2 also sum-reduce-scatter on symmetric memory), NCCL's CTA policy by environment
# (NCCL_CTA_POLICY=1 efficiency, =2 zero: copy-engine all-gather on symmetric buffers), blocks kept gathered.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w52; rm -rf $W; mkdir -p $W; END=${END:-560}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c "import torch; from torch.distributed.fsdp import FSDPModule as F; import torch.distributed.fsdp._fully_shard._fsdp_collectives as c; print(torch.__version__, torch.cuda.nccl.version(), hasattr(F,'set_symm_mem_for_comm'), hasattr(F,'set_force_sum_reduction_for_comms'), hasattr(c,'SymmMemReduceScatter'))"
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
K="--parallel.reshard_after_forward=false"
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
SHARDWISE_X_FSDP_SYMM=1 NCCL_CTA_POLICY=2 row a dp2-symm-ce qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
NCCL_CTA_POLICY=1 row a dp2-cta-eff qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
row a dp2-keep qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 "$K"
SHARDWISE_X_FSDP_SYMM=1 NCCL_CTA_POLICY=2 row a dp2-keep-symm-ce qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 "$K"
SHARDWISE_X_FSDP_SYMM=2 NCCL_CTA_POLICY=2 row a dp2-keep-symm2-ce qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 "$K"
SHARDWISE_X_FSDP_SYMM=1 row a dp2-keep-symm qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 "$K"
row a dp2-again qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
grep -h "EXPERIMENT\|NCCL INFO.*[Ss]ymm\|CE " $W/*/*.log | sort | uniq -c | head -20
cp .carry/run52.sh $OUT/run.sh
summarize $OUT
