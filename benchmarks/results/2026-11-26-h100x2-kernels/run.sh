#!/usr/bin/env bash
# Device call 42 (2 GPUs; rows of one stream are comparable). Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master
# weights, compiled, no AC, micro-batch 4, main + profile.py's kernel table. Where the GPU time goes, by kernel
# kind and name: dp_shard=2, tp=2 and tp=2 with async TP, each profiled (one more step under torch.profiler).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w42; rm -rf $W; mkdir -p $W; END=540
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6 PROFILE=true
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 150 ""
row a tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 150 ""
row a tp2async qwen2-1.5b 4096 2 8 sw-none-compile-mb4-asynctp 170 ""
for d in dp2 tp2 tp2async; do
  for k in $W/$d/*/profile-kernels.txt; do echo "==== $d"; cat $k; done >> $OUT/kernels.txt
  for k in $W/$d/*/profile-ops.txt; do echo "==== $d"; cat $k; done >> $OUT/ops.txt
  for t in $W/$d/*/trace-rank0.json; do gzip -c $t > $OUT/trace-$d.json.gz; done
done
ls -la $OUT
summarize $OUT
