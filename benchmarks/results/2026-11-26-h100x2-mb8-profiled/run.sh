#!/usr/bin/env bash
# Device call 47 (2 GPUs; rows of one stream are comparable), main 3110d64: Qwen2-1.5B (seq 4096, GB 8, fp32 master
# weights, compiled, no AC). Profiled: dp_shard=2 mb 4, tp=2 mb 8 with and without async TP (GPU time by kernel kind
# at micro-batch 8, the bench table's kind row on a GPU); then one unprofiled pair.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w47; rm -rf $W; mkdir -p $W; END=${END:-560}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
PROFILE=true row a p-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 ""
PROFILE=true row a p-tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 130 "--parallel.async_tp=true"
PROFILE=true row a p-tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 120 ""
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 90 ""
row a tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 95 "--parallel.async_tp=true"
for d in p-dp2 p-tp2-mb8-async p-tp2-mb8; do
  for k in $W/$d/*/profile-kernels.txt; do echo "==== $d"; cat $k; done >> $OUT/kernels.txt
  for k in $W/$d/*/profile-ops.txt; do echo "==== $d"; cat $k; done >> $OUT/ops.txt
  for t in $W/$d/*/trace-rank0.json; do gzip -c $t > $OUT/trace-$d.json.gz; done
  grep -h -A3 "GPU time by kind" $W/$d/*.log >> $OUT/kind-rows.txt 2>/dev/null
done
cp .carry/run47.sh $OUT/run.sh
summarize $OUT
