#!/usr/bin/env bash
# Device call 39 (4 GPUs of one host; rows of one stream are comparable). Llama-3-8B shapes, seq 4096, GB 8, bf16
# weights, compiled, no AC, micro-batch 2, tp=2 (54.0 GiB): parallel.tp_overlap=none against reorder, where a
# block's matmuls are ~5x larger than Qwen2-1.5B's beside the same share of collectives (189 ms of 1.58 s exposed).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w39; rm -rf $W; mkdir -p $W; END=570
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
L="llama3-8b 4096 2 8 sw-none-compile-mb2 270"
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=4
  row A a-none $L "--model.dtype=bfloat16 --parallel.tp_overlap=none"
  row A a-reorder $L "--model.dtype=bfloat16 --parallel.tp_overlap=reorder"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3 WARMUP=2 STEPS=4 PROFILE=true
  row B b-reorder $L "--model.dtype=bfloat16 --parallel.tp_overlap=reorder"
  row B b-none $L "--model.dtype=bfloat16 --parallel.tp_overlap=none"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
for v in reorder none; do cp $W/b-$v/sw-none-compile-mb2/profile-ops.txt $OUT/profile-ops-8b-tp2-$v.txt 2>/dev/null; done
summarize $OUT
