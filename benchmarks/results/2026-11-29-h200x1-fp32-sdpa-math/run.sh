#!/usr/bin/env bash
# Device call 156 (1 GPU), session 37: why shardwise plan fell 0.7-1.1 GiB short of the MoE families' fp32 eager
# peaks in call 155 (about one fp32 b*h*s*s score tensor per layer): which sdpa kernel a dense mask gets in fp32
# (.carry/sdpa_probe.py), and a dense family (llama) trained the same way, with the plan check.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-156
source benchmarks/smoke_env.sh
python3 .carry/sdpa_probe.py 2>&1 | tee "$OUT/sdpa_probe.txt"
RUN=(--train.steps=10 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=2 --data.max_bytes=1000000
     --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 --train.activation_checkpointing=none
     --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1 --train.compile=false --model.packed_attention=mask)
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
step llama-1 0 timeout 150 python3 -m shardwise.cli train --output.dir="$WORK/runs/llama-1" --output.progress=false \
  --model.path="$WORK/llama" --data.cache_dir="$WORK/cache/llama-1" "${RUN[@]}" --train.dtype=float32
"${CHECKS[@]}" report-archs "$WORK" "$OUT" | grep "llama\|checks:"
cp .carry/run156.sh "$OUT/run.sh"; cp .carry/sdpa_probe.py "$OUT/"
