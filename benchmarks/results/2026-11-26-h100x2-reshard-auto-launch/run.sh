#!/usr/bin/env bash
# Device call 55 (2 GPUs): parallel.reshard_after_forward=auto under torchrun (each rank plans before it joins the
# process group; rank 0 says which), 20 steps of tiny-qwen2 at dp_shard=2; then README's `shardwise train` with no
# arguments (tp=2 on 2 GPUs: no FSDP, nothing to resolve). main 58f5b79.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w55; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
timeout 200 torchrun --standalone --nproc-per-node=2 -m shardwise.cli train --parallel.tp=1 --train.steps=20 \
  --output.progress=false --output.dir=$W/torchrun > $W/torchrun.log 2>&1; echo "torchrun dp_shard=2: exit $? in $((SECONDS - t0)) s"
grep -h "shardwise: note\|Error\|error" $W/torchrun.log | head -5; tail -2 $W/torchrun/metrics.jsonl
t0=$SECONDS
timeout 200 python3 -m shardwise.cli train --output.dir=$W/default > $W/default.log 2>&1; echo "shardwise train (no arguments): exit $? in $((SECONDS - t0)) s"
grep -h "shardwise: note\|Error\|error" $W/default.log | head -5; tail -1 $W/default/metrics.jsonl
cp $W/*.log $OUT/; cp .carry/run55.sh $OUT/run.sh
