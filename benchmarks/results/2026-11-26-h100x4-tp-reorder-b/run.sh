#!/usr/bin/env bash
# Device call 38 (4 GPUs of one host; rows of one stream are comparable). Qwen2-1.5B shapes, seq 4096, GB 8, fp32
# master weights, compiled, no AC, micro-batch 4, tp=2. Why parallel.tp_overlap=reorder (call 37: exposed comm
# 58.5 -> 36.8 ms) did not make the step faster: NCCL's SMs taken from the matmuls it runs beside (NCCL_MAX_CTAS=8, 16)
# or inductor's peak-memory reordering turned off (SW_KEEP_PEAK=1 leaves it on; .carry/sc38/sitecustomize.py).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site:$PWD/.carry/sc38
W=/tmp/w38; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
Q="qwen2-1.5b 4096 2 8 sw-none-compile-mb4 130"
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=8
  row A a-none $Q "--parallel.tp_overlap=none"
  NCCL_MAX_CTAS=8 row A a-reorder-ctas8 $Q "--parallel.tp_overlap=reorder"
  NCCL_MAX_CTAS=16 row A a-reorder-ctas16 $Q "--parallel.tp_overlap=reorder"
  row A a-reorder $Q "--parallel.tp_overlap=reorder"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3 WARMUP=2 STEPS=8
  row B b-reorder $Q "--parallel.tp_overlap=reorder"
  SW_KEEP_PEAK=1 row B b-reorder-peak $Q "--parallel.tp_overlap=reorder"
  row B b-none $Q "--parallel.tp_overlap=none"
  NCCL_MAX_CTAS=8 row B b-reorder-ctas8 $Q "--parallel.tp_overlap=reorder"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
summarize $OUT
