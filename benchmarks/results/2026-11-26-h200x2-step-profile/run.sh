#!/usr/bin/env bash
# Device call 59 (2 GPUs): README's `shardwise train` with no arguments on the GPUs (the working tree that keeps FSDP
# units gathered through the micro-batches); where Qwen2-1.5B's step goes now: dp_shard=2 (default, micro-batch 4,
# GB 8) and tp=2 (micro-batch 8) profiled, plus dp_shard=2 unprofiled; gaps.txt by benchmarks/trace_gaps.py.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w59; rm -rf $W; mkdir -p $W; END=${END:-560}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1
t0=$SECONDS
PYTHONPATH=$PWD/src:/tmp/site timeout 200 python3 -m shardwise.cli train --output.dir=$W/default > $W/default.log 2>&1
echo "shardwise train (no arguments): exit $? in $((SECONDS - t0)) s"; tail -1 $W/default/metrics.jsonl
export WARMUP=2 STEPS=6
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
PROFILE=true row a p-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
PROFILE=true row a p-tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 100 ""
for d in p-dp2 p-tp2-mb8; do
  for k in $W/$d/*/profile-kernels.txt; do echo "==== $d"; cat $k; done >> $OUT/kernels.txt
  for t in $W/$d/*/trace-rank0.json; do PYTHONPATH=$PWD/src:/tmp/site python3 benchmarks/trace_gaps.py --largest 8 $t >> $OUT/gaps.txt 2>&1; done
done
cp $W/default.log $OUT/; cp .carry/run59.sh $OUT/run.sh
summarize $OUT
