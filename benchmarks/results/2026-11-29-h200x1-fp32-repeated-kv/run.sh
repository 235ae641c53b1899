#!/usr/bin/env bash
# Device call 158 (1 GPU), session 37: fp32 sdpa with K/V repeated (shardwise.sdpa) in this tree. What gpu_archs.sh's
# one-GPU llama run saves for backward in fp32 (.carry/saved_probe.py; call 157: 1 GiB of fp32 scores from sdpa's math
# kernel), then gpu_archs.sh's one-GPU reference runs in fp32, eager, with smoke_checks' plan check (call 155: plan
# 0.69-0.83 of the MoE peaks; call 156: 0.72 of llama's).
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-158
source benchmarks/smoke_env.sh
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
RUN=(--train.seq_len=1024 --data.max_bytes=1000000 --train.global_batch_size=8 --train.micro_batch_size=4
     --train.eval_every=0 --train.activation_checkpointing=none --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1
     --train.compile=false --model.packed_attention=mask --train.dtype=float32)
(export RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511
 timeout 120 python3 .carry/saved_probe.py --output.dir="$WORK/probe" --output.progress=false --model.path="$WORK/llama" \
   --data.cache_dir="$WORK/cache/probe" --train.steps=2 "${RUN[@]}" 2>&1 | grep -A15 "saved for\|done:\|rror") \
  | tee "$OUT/saved.txt"
train() {  # ARCH: its one-GPU reference run in fp32, as gpu_archs.sh trains a mixture of experts
  step "$1-1" 0 timeout 150 python3 -m shardwise.cli train --output.dir="$WORK/runs/$1-1" --output.progress=false \
    --model.path="$WORK/$1" --data.cache_dir="$WORK/cache/$1-1" --train.steps=50 --train.lr=1e-3 \
    --train.warmup_steps=10 "${RUN[@]}"
  rm -rf "$WORK/runs/$1-1/checkpoints"
}
(train llama; train olmoe; train qwen2_moe) &
(train mixtral; train qwen3_moe) &
wait
"${CHECKS[@]}" report-archs "$WORK" "$OUT" | grep "plan memory\|checks:"
grep -h "done:" "$WORK"/logs/*-1.log
cp .carry/run158.sh "$OUT/run.sh"; cp .carry/saved_probe.py "$OUT/"
