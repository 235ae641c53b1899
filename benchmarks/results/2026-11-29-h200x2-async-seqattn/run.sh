#!/usr/bin/env bash
# Device call 154 (2 GPUs), session 37: async TP with attention per sequence (the default since 09588a5), whose only
# TP collectives are the MLP's all-gather and reduce-scatter beside its long matmuls. Qwen2-1.5B shapes, seq 4096,
# GB 8, fp32 master weights, compiled, no checkpointing, warmup 2, median of 10, one call: tp=2 default (auto ->
# per sequence) at micro-batch 8, the same with parallel.async_tp=true, dp_shard=2 at micro-batch 4; then
# Llama-3-8B shapes (bf16 weights, micro-batch 2, per sequence) without and with async TP, as time allows.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/smoke-work-154
source benchmarks/smoke_env.sh
export NVSHMEM_DISABLE_NVLS=1
W=/tmp/w154; rm -rf $W; mkdir -p $W; END=400
source benchmarks/stream_rows.sh
export WARMUP=2 STEPS=10
row a q-tp2-default qwen2-1.5b 4096 2 8 sw-none-compile-mb8 125 ""
row a q-tp2-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8-asynctp 125 ""
row a q-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 125 ""
row a l-tp2-default llama3-8b 4096 2 8 sw-none-compile-mb2 140 "--model.dtype=bfloat16"
row a l-tp2-async llama3-8b 4096 2 8 sw-none-compile-mb2-asynctp 140 "--model.dtype=bfloat16"
grep -h "tp_attention=auto\|async_tp" $W/*/*.log | sort | uniq -c
summarize $OUT | tee $OUT/summary.txt
cp .carry/run154.sh "$OUT/run.sh"
