#!/usr/bin/env bash
# Device call 43 (2 GPUs; rows of one stream are comparable). Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master
# weights, compiled, no AC, micro-batch 4. "base" = main ae22ff1 (.carry/base); the rest = the working tree:
# vocabulary-parallel loss picking the target by column compare (no gather), plus two experiments by environment:
# SHARDWISE_X_MODE=reduce-overhead (compiled blocks replayed as CUDA graph trees, gradients kept between steps) and
# SHARDWISE_X_SKIPGUARDS=1 (dynamo's guards skipped after step 2).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w43; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
ROOT=$PWD/.carry/base row a tp2-base qwen2-1.5b 4096 2 8 sw-none-compile-mb4 110 ""
PROFILE=true row a tp2-ce qwen2-1.5b 4096 2 8 sw-none-compile-mb4 110 ""
SHARDWISE_X_MODE=reduce-overhead PROFILE=true row a tp2-graphs qwen2-1.5b 4096 2 8 sw-none-compile-mb4 130 ""
SHARDWISE_X_SKIPGUARDS=1 row a tp2-skipguards qwen2-1.5b 4096 2 8 sw-none-compile-mb4 110 ""
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
ROOT=$PWD/.carry/base row a tp2-base2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 110 ""
for d in tp2-ce tp2-graphs; do
  for k in $W/$d/*/profile-kernels.txt; do echo "==== $d"; cat $k; done >> $OUT/kernels.txt
  for t in $W/$d/*/trace-rank0.json; do gzip -c $t > $OUT/trace-$d.json.gz; done
done
summarize $OUT
