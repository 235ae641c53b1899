#!/usr/bin/env bash
# Device call 111 (4 GPUs, two 2-GPU streams side by side), session 27: attention's all-gather handed to q/k/v as
# (batch/tp, seq, hidden) -> (batch, seq, hidden) straight from the collective (the working tree: inductor's async-TP
# pass can now pipeline it into Llama's q/k/v) against main ca31850's tree (.carry/src-main: gathered tokens viewed to
# (batch, seq) first, not pipelined). Llama-3-8B shapes, tp=2, bf16 weights, no checkpointing, micro-batch 2, seq
# 4096, GB 8, compiled. Each stream runs the four rows in its own order; ratios only within a stream.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=560
row() {  # STREAM GPUS TREE MODE: one gpu_sweep row; TREE new | main; MODE plain | async
  local s=$1 gpus=$2 tree=$3 mode=$4 extra="--model.dtype=bfloat16" src=$PWD/src t=150
  [ "$mode" = async ] && extra+=" --parallel.async_tp=true"
  [ "$tree" = main ] && src=$PWD/.carry/src-main/src
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$s $tree $mode: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$src:/tmp/site TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$tree-$mode \
    OUT=$OUT/$s-$tree-$mode TP=2 GB=8 WARMUP=2 STEPS=4 EXTRA="$extra" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh llama3-8b 4096 sw-none-compile-mb2 > $OUT/$s-$tree-$mode.txt 2>&1
  echo "$s $tree $mode: $(tail -n 1 $OUT/$s-$tree-$mode.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
( for m in "main async" "new async" "main plain" "new plain"; do row A 0,1 $m; done ) &
( for m in "new async" "main async" "new plain" "main plain"; do row B 2,3 $m; done ) &
wait
cp .carry/run111.sh $OUT/run.sh
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */ 2>/dev/null) 2>/dev/null
echo "=== rows (stream tree mode: name step_s tok/s/dev MFU GiB)"; cat $OUT/rows.txt
