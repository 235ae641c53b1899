#!/usr/bin/env bash
# Device call 155 (1 GPU), session 37: gpu_archs.sh's one-GPU reference runs of the four mixtures of experts as that
# script now trains them (fp32, eager: smoke_checks.MOE_FLAGS), and smoke_checks' plan check on each: shardwise
# plan's memory total against the measured peak, before a 2-GPU run. Its report's other rows (dense families,
# layouts) have no runs here.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-155
source benchmarks/smoke_env.sh
RUN=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000
     --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 --train.activation_checkpointing=none
     --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1 --train.compile=false --model.packed_attention=mask)
declare -A EXTRA; while read -r arch flags; do EXTRA[$arch]=$flags; done < <("${CHECKS[@]}" archs)
train() {  # ARCH: its reference run, as gpu_archs.sh's train() gives it
  local arch=$1
  step "$arch-1" 0 timeout 200 python3 -m shardwise.cli train --output.dir="$WORK/runs/$arch-1" --output.progress=false \
    --model.path="$WORK/$arch" --data.cache_dir="$WORK/cache/$arch-1" "${RUN[@]}" ${EXTRA[$arch]}
  rm -rf "$WORK/runs/$arch-1/checkpoints"
}
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
(train olmoe; train qwen2_moe) &
(train mixtral; train qwen3_moe) &
wait
echo "runs took $SECONDS s"
"${CHECKS[@]}" report-archs "$WORK" "$OUT" --seconds "$SECONDS" | grep -i "moe\|mixtral\|checks:"
cp .carry/run155.sh "$OUT/run.sh"
