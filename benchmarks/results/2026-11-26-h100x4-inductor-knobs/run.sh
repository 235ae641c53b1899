#!/usr/bin/env bash
# Device call 41 (4 GPUs of one host; rows of one stream are comparable). Qwen2-1.5B shapes, seq 4096, GB 8, fp32
# master weights, compiled, no AC, micro-batch 4, main 75b5e2a. Inductor's own tuning knobs, by environment:
# coordinate-descent tuning of its generated kernels, and max-autotune of the matmuls (Triton templates against
# cuBLAS). Stream A dp_shard=2, stream B tp=2.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w41; rm -rf $W; mkdir -p $W; END=570
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
run() {  # STREAM TP GPUS
  local s=$1 tp=$2
  export CUDA_VISIBLE_DEVICES=$3 WARMUP=2 STEPS=8
  row $s $s-default qwen2-1.5b 4096 $tp 8 sw-none-compile-mb4 130 ""
  TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 row $s $s-coord qwen2-1.5b 4096 $tp 8 sw-none-compile-mb4 170 ""
  TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 row $s $s-autotune qwen2-1.5b 4096 $tp 8 sw-none-compile-mb4 260 ""
}
run a 1 0,1 > $W/A.out 2>&1 &
run b 2 2,3 > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
summarize $OUT
