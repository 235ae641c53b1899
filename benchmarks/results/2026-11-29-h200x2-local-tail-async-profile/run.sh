#!/usr/bin/env bash
# Device call 166 (2 GPUs), session 38: (1) the step's tail on local tensors (optim.on_local_tensors and the norm
# from local tensors) against main before it (92b3264, carried as .carry/old), alternating, one call; (2) where the
# per-sequence tp=2 step's time goes beyond its compute, plain and with async TP: each tp=2 row of the new tree also
# profiles one step, read by benchmarks/trace_gaps.py and .carry/streams.py. Qwen2-1.5B shapes, seq 4096, GB 8,
# fp32 master weights, compiled, no checkpointing; dp_shard=2 micro-batch 4, tp=2 micro-batch 8 (per sequence, auto).
# Warmup 2, median of 10.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/smoke-work-166
source benchmarks/smoke_env.sh
export NVSHMEM_DISABLE_NVLS=1
W=/tmp/w166; rm -rf $W; mkdir -p $W; END=540
source benchmarks/stream_rows.sh
export WARMUP=2 STEPS=10
ROOT=$PWD/.carry/old row a dp2-old qwen2-1.5b 4096 1 8 sw-none-compile-mb4 95 ""
row a dp2-new qwen2-1.5b 4096 1 8 sw-none-compile-mb4 95 ""
ROOT=$PWD/.carry/old row a tp2-old qwen2-1.5b 4096 2 8 sw-none-compile-mb8 95 ""
PROFILE=true row a tp2-new qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 ""
PROFILE=true row a tp2-async-new qwen2-1.5b 4096 2 8 sw-none-compile-mb8-asynctp 110 ""
grep -h "tp_attention=auto\|async_tp" $W/*/*.log | sort | uniq -c
summarize $OUT | tee $OUT/summary.txt
for f in $W/*/*.json; do python3 -c "import json,sys; r=json.load(open(sys.argv[1])); 'versions' in r and print(sys.argv[1], r['versions']['shardwise'])" $f; done | tee -a $OUT/summary.txt
P=$W/tp2-new/sw-none-compile-mb8/trace-rank0.json A=$W/tp2-async-new/sw-none-compile-mb8-asynctp/trace-rank0.json
{ python3 .carry/streams.py plain=$P async=$A
  python3 benchmarks/trace_gaps.py --largest 10 $P $A
  for f in $(find $W -name profile-kernels.txt); do echo "==== $f"; head -40 $f; done
} > $OUT/analysis.txt 2>&1
cp .carry/run166.sh "$OUT/run.sh"
head -c 7000 $OUT/analysis.txt
