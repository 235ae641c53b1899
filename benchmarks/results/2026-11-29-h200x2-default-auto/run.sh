#!/usr/bin/env bash
# Device call 152 (2 GPUs), session 36: parallel.tp_attention's default flipped to auto in this tree. Qwen2-1.5B
# shapes, seq 4096, GB 8, fp32 master weights, compiled, no checkpointing, warmup 2, median of 10: dp_shard=2 at
# micro-batch 4, tp=2 with no attention flag (the new default: auto) and tp=2 split by heads, at micro-batch 8, one
# call; then README's `shardwise train` with no arguments on both GPUs.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/smoke-work-152
source benchmarks/smoke_env.sh
export NVSHMEM_DISABLE_NVLS=1
W=/tmp/w152; rm -rf $W; mkdir -p $W; END=330
source benchmarks/stream_rows.sh
export WARMUP=2 STEPS=10
row a q-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 125 ""
row a q-tp2-default qwen2-1.5b 4096 2 8 sw-none-compile-mb8 125 ""
row a q-tp2-heads qwen2-1.5b 4096 2 8 sw-none-compile-mb8 125 "--parallel.tp_attention=heads"
grep -h "tp_attention=auto" $W/*/*.log | sort | uniq -c
summarize $OUT | tee $OUT/summary.txt
step default 0,1 timeout 150 python3 -m shardwise.cli train --output.dir="$WORK/runs/default" --output.progress=false
grep -h "tp_attention\|done:" $WORK/logs/default.log
cp .carry/run152.sh "$OUT/run.sh"
