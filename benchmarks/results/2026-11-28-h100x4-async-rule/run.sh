#!/usr/bin/env bash
# Device call 108 (4 GPUs, two 2-GPU streams side by side), session 26, main 0799979 + .carry/xasync/sitecustomize.py
# (experiment, not on main): async TP only where the matmul can hide its collective (X_ASYNC_MIN=3072: all-gathers
# fused with matmuls of >= 3072 output columns, reduce-scatters with matmuls contracting >= 3072), against plain tp=2
# and against async TP everywhere. Ratios only within a stream. Each row its own inductor cache.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site:$PWD/.carry/xasync
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
row() {  # GPUS DIR PRESET ROW MODE EXTRA...: one gpu_sweep row; MODE plain | async | rule
  local gpus=$1 dir=$2 preset=$3 name=$4 mode=$5; shift 5
  local extra="$*" min=
  [ "$mode" != plain ] && extra+=" --parallel.async_tp=true"
  [ "$mode" = rule ] && min=3072
  CUDA_VISIBLE_DEVICES=$gpus X_ASYNC_MIN=$min TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$dir-$mode OUT=$OUT/$dir-$mode TP=2 GB=8 \
    WARMUP=2 STEPS=5 EXTRA="$extra" timeout 280 bash benchmarks/gpu_sweep.sh $preset 4096 $name > $OUT/$dir-$mode.txt 2>&1
}
stream() {  # GPUS DIR PRESET ROW EXTRA...
  local gpus=$1 dir=$2 preset=$3 name=$4; shift 4
  for mode in plain rule async; do row $gpus $dir $preset $name $mode "$@"; done
}
stream 0,1 q15 qwen2-1.5b sw-none-compile-mb8 &
stream 2,3 l8b llama3-8b sw-none-compile-mb2 --model.dtype=bfloat16 &
wait
cp .carry/run108.sh $OUT/run.sh; cp .carry/xasync/sitecustomize.py $OUT/
for f in $OUT/*-rule/*.log; do echo "== $f"; grep -h '\[x-async\]' "$f" | sort | uniq -c; done > $OUT/decisions.txt
cat $OUT/decisions.txt
for d in q15 l8b; do for mode in plain rule async; do echo "--- $d $mode"; tail -n 3 $OUT/$d-$mode.txt; done; done | tee $OUT/summary.txt
