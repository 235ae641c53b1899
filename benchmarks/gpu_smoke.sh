#!/usr/bin/env bash
# Smoke test of shardwise on the GPUs of this machine; prints a PASS/FAIL table last, exits 1 on any FAIL.
#   bash benchmarks/gpu_smoke.sh                # from the repository root; about 10 minutes on 2 GPUs
#   SMOKE_CPU=1 bash benchmarks/gpu_smoke.sh    # the same checks on CPU gloo processes, tiny shapes
#                                               # (SMOKE_NDEV=4 acts as 4 GPUs: adds the 4-device layouts)
# $OUT (default runs/smoke) receives only smoke.json (every number) and smoke.log (every log, with headers),
# so it can be copied back whole; runs, checkpoints and model folders go to $SMOKE_WORK (default
# runs/smoke-work, emptied first). Checks (thresholds and why: benchmarks/smoke_checks.py):
#   1 `shardwise train` with no arguments learns: loss falls >= 40%, val_loss falls
#   2 a random-init Qwen2 HF folder (save_pretrained, byte tokenizer) fine-tunes on chat .jsonl at tp=2 (ft-a),
#     and the saved tokenizer round-trips through AutoTokenizer
#   3 ft-b, started from a copy of ft-a's step-10 checkpoint with --checkpoint.resume=auto, repeats ft-a's steps 11..20
#   4 ft-a's last checkpoint, exported and loaded with from_pretrained, gives ft-a's val_loss
#   5 the same 50 bf16 steps on 1 GPU vs dp_shard=2, tp=2, tp=2 without SP, tp=2 with attention per sequence, cp=2
#     (4 GPUs: dp_shard=2 x tp=2, tp=4;
#     8 GPUs: dp_shard=4 x tp=2, tp=8), and on 1 GPU with packed rows through flex block masks instead of sdpa's
#     dense mask (model.packed_attention=flex, GPU only); SKIP with 1 GPU
#   6 shardwise plan's memory total per device >= each run's measured peak (peak_mem_gib)
set -uo pipefail
OUT=${OUT:-runs/smoke} WORK=${SMOKE_WORK:-runs/smoke-work}
source benchmarks/smoke_env.sh

FIXED=(--train.compile=false --train.activation_checkpointing=none)  # explicit, so later defaults cannot slow it
if [ "$CPU" = 1 ]; then
  export CUDA_VISIBLE_DEVICES=
  NDEV=${SMOKE_NDEV:-2} SIZE=--cpu
  DEFAULT=(--train.steps=40 --train.eval_every=20)  # the no-argument job, shortened for 2 CPU cores
  FT=(--train.seq_len=128 --train.global_batch_size=8 --train.micro_batch_size=4)
  PARITY=(--train.steps=20 --train.seq_len=64 --train.lr=3e-3 --train.warmup_steps=5 --data.max_bytes=200000)
else
  NDEV=$(python3 -c 'import torch; print(torch.cuda.device_count())') SIZE=
  [ "$NDEV" -ge 1 ] || { echo "no GPU here; SMOKE_CPU=1 runs the dry-run on CPU"; exit 2; }
  DEFAULT=()
  FT=(--train.seq_len=256 --train.global_batch_size=16 --train.micro_batch_size=8)
  PARITY=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000)
fi
FT_TP=$(( NDEV >= 2 ? 2 : 1 )) FT_STEPS=20 PARITY_BATCH=8
FT+=(--model.path="$WORK/ft-model" --data.path="$WORK/chat.jsonl" --parallel.tp=$FT_TP --parallel.dp_shard=1
     --train.steps=$FT_STEPS --train.lr=1e-3 --train.warmup_steps=2 --train.eval_every=10 --data.val_fraction=0.05
     --data.val_batches=2 --checkpoint.every=10 "${FIXED[@]}")
PARITY+=(--model.path="$WORK/parity-model" --train.global_batch_size=$PARITY_BATCH --train.eval_every=0 "${FIXED[@]}")

train() {  # NAME NDEV ARGS...: shardwise train on the first NDEV GPUs, or on $GPUS (CPU: the processes ARGS ask for)
  local name=$1 ndev=$2; shift 2
  step "$name" "${GPUS:-$(seq -s, 0 $((ndev - 1)))}" python3 -m shardwise.cli train --output.dir="$WORK/runs/$name" \
    --output.progress=false "$@"
}
parity() {  # NAME DP_SHARD TP CP ARGS...: the parity run on dp_shard x tp x cp devices
  local name=$1 dp=$2 tp=$3 cp=$4; shift 4
  local mb=$(( PARITY_BATCH / dp < 4 ? PARITY_BATCH / dp : 4 ))  # the split changes no math (token-mean loss)
  train "parity-$name" $((dp * tp * cp)) "${PARITY[@]}" --parallel.dp_shard=$dp --parallel.tp=$tp \
    --parallel.cp=$cp --train.micro_batch_size=$mb "$@"
  rm -rf "$WORK/runs/parity-$name/checkpoints"  # the always-saved final checkpoint (6 GB on GPU); nothing reads it
}
export_check() {  # GPU: export ft-a's last checkpoint (one CPU process), then load it on GPU and evaluate
  step export "" python3 -m shardwise.cli export "$WORK/runs/ft-a/checkpoints/step-$FT_STEPS" "$WORK/export" \
    && step export-check "$1" "${CHECKS[@]}" export-check "$WORK"
}

step prepare "$(seq -s, 0 $((NDEV - 1)))" "${CHECKS[@]}" prepare "$WORK" $SIZE
train default "$NDEV" "${DEFAULT[@]}"
train ft-a $FT_TP "${FT[@]}"
mkdir -p "$WORK/runs/ft-b/checkpoints" && cp -r "$WORK/runs/ft-a/checkpoints/step-10" "$WORK/runs/ft-b/checkpoints/" \
  && train ft-b $FT_TP "${FT[@]}" --checkpoint.resume=auto
if [ "$NDEV" -ge 2 ]; then
  # on the last GPU, while parity-1 has the first: the flex run, and the export check's small model beside it
  export_check $((NDEV - 1)) &
  [ "$CPU" = 1 ] || GPUS=$((NDEV - 1)) parity 1-flex 1 1 1 --model.packed_attention=flex &
  parity 1 1 1 1
  wait
  parity dp2 2 1 1
  parity tp2 1 2 1 --parallel.tp_attention=heads  # the default (auto) attends per sequence where that fits
  parity tp2-nosp 1 2 1 --parallel.sequence_parallel=false
  parity tp2-seqattn 1 2 1 --parallel.tp_attention=sequences  # each TP rank attends over its own rows, every head
  parity cp2 1 1 2  # each row split over 2 ranks, K/V all-gathered, packed documents' masks on global indices
  if [ "$NDEV" -ge 4 ]; then parity dp2xtp2 2 2 1 --parallel.tp_attention=heads; parity tp4 1 4 1 --parallel.tp_attention=heads; fi
  if [ "$NDEV" -ge 8 ]; then parity dp4xtp2 4 2 1; parity tp8 1 8 1; fi
else
  export_check 0
fi
echo "runs took $SECONDS s; plans and report:"
"${CHECKS[@]}" report "$WORK" "$OUT" --seconds "$SECONDS"
