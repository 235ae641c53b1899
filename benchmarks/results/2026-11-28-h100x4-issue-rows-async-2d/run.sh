#!/usr/bin/env bash
# Device call 113 (4 GPUs), session 27, the working tree ("new": attention's and the MLP's gathered tokens straight
# from the all-gather) unless named "old" (0799979, .carry/tree-old). Part 1, two 2-GPU streams: the issue's
# Qwen2-1.5B rows (seq 4096, GB 8, fp32 master weights, compiled, no checkpointing): dp_shard=2 micro-batch 4, tp=2
# micro-batch 8 plain and async TP (ratios within a stream); stream B ends with README's `shardwise train` on its two
# GPUs. Part 2, all 4 GPUs: Llama-3-8B shapes at dp_shard=2 x tp=2, bf16 weights, micro-batch 2, seq 4096, GB 8,
# compiled, no checkpointing: plain, async TP (new), async TP (old).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) NEW=$PWD OLD=$PWD/.carry/tree-old
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=575
row() {  # STREAM GPUS PRESET ROW TP TREE MODE EXTRA
  local s=$1 gpus=$2 preset=$3 name=$4 tp=$5 tree=$6 mode=$7 extra=$8 root=$NEW t=110
  [ "$mode" = async ] && extra+=" --parallel.async_tp=true"
  [ "$tree" = old ] && root=$OLD
  local d=$s-$preset-tp$tp-$tree-$mode
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  (cd $root && CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=/tmp/site TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$s-$tree-$mode-$tp \
    OUT=$OUT/$d TP=$tp GB=8 WARMUP=2 STEPS=4 EXTRA="$extra" timeout -k 5 $t \
    bash benchmarks/gpu_sweep.sh $preset 4096 $name > $OUT/$d.txt 2>&1)
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
quickstart() {
  CUDA_VISIBLE_DEVICES=2,3 PYTHONPATH=$NEW/src:/tmp/site timeout 110 python3 -m shardwise.cli train --output.dir=/tmp/qs \
    --output.progress=false > $OUT/quickstart.log 2>&1
  echo "quick start (shardwise train, 2 GPUs) exit $? [done at $((SECONDS - T0)) s]; last: $(tail -n 1 /tmp/qs/metrics.jsonl | cut -c1-200)" | tee -a $OUT/rows.txt
}
( row A 0,1 qwen2-1.5b sw-none-compile-mb4 1 new plain ""; row A 0,1 qwen2-1.5b sw-none-compile-mb8 2 new async ""
  row A 0,1 qwen2-1.5b sw-none-compile-mb8 2 new plain "" ) &
( row B 2,3 qwen2-1.5b sw-none-compile-mb8 2 new plain ""; row B 2,3 qwen2-1.5b sw-none-compile-mb8 2 new async ""
  row B 2,3 qwen2-1.5b sw-none-compile-mb4 1 new plain ""; quickstart ) &
wait
for m in "new plain" "new async" "old async"; do row 2D 0,1,2,3 llama3-8b sw-none-compile-mb2 2 $m "--model.dtype=bfloat16 --parallel.dp_shard=2"; done
cp .carry/run113.sh $OUT/run.sh
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */) quickstart.log 2>/dev/null
echo "=== rows"; cat $OUT/rows.txt
