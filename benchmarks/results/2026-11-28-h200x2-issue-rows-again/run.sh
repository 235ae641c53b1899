#!/usr/bin/env bash
# Device call 124 (2 GPUs, the warm machine of call 123), session 30: issue 9's Qwen2-1.5B rows on main (614ae64's
# tree) in one stream, another machine's sample of the ratios: dp_shard=2 micro-batch 4, tp=2 micro-batch 8 plain and
# with async TP, and async TP with NCCL's streams at high priority (TORCH_NCCL_HIGH_PRIORITY=1: the collectives that
# the reorder passes put beside independent matmuls get the SMs first). Seq 4096, GB 8, fp32 master weights,
# compiled, no checkpointing, warmup 2, median of 4.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=560
row() {  # NAME TP ROW MODE
  local n=$1 tp=$2 name=$3 mode=$4 extra="" t=120 env=()
  [ "$mode" != plain ] && extra=--parallel.async_tp=true
  [ "$mode" = asynchi ] && env=(TORCH_NCCL_HIGH_PRIORITY=1)
  local d=$n-tp$tp-$mode
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  env "${env[@]}" OUT=$OUT/$d TP=$tp GB=8 WARMUP=2 STEPS=4 EXTRA="$extra" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh qwen2-1.5b 4096 $name > $OUT/$d.txt 2>&1
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
row A 1 sw-none-compile-mb4 plain; row B 2 sw-none-compile-mb8 plain; row C 2 sw-none-compile-mb8 async
row D 2 sw-none-compile-mb8 asynchi; row E 2 sw-none-compile-mb8 plain; row F 1 sw-none-compile-mb4 plain
row G 2 sw-none-compile-mb8 async
cp .carry/run124.sh $OUT/run.sh
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */) 2>/dev/null
echo "=== rows"; cat $OUT/rows.txt
for f in $OUT/*.txt; do [ "$f" = $OUT/rows.txt ] || { echo "== $f"; tail -n 4 $f; }; done
