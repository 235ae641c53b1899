#!/usr/bin/env bash
# Device call 151 (2 GPUs), session 36: the core of calls 145 and 146 in one call (the 2-GPU kind was lent with
# ~990 s of device time left). Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no checkpointing,
# micro-batch 8, warmup 2, median of 10 (gpu_sweep.sh's sw-none-compile-mb8): tp=2 with attention split by heads,
# then tp=2 under parallel.tp_attention=auto (per sequence where it runs and fits). Then the GPU numerics of attention
# per sequence: gpu_smoke.sh's check 5 (50 bf16 steps of the parity model, seq 1024, eager) on 1 GPU against tp=2
# per sequence, side by side on the GPUs (not timed); smoke_checks' report (checks not run: FAIL rows).
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/smoke-work
source benchmarks/smoke_env.sh
export NVSHMEM_DISABLE_NVLS=1
W=/tmp/w151; rm -rf $W; mkdir -p $W; END=330
step prepare 0,1 "${CHECKS[@]}" prepare "$WORK"
source benchmarks/stream_rows.sh
export WARMUP=2 STEPS=10
row a q-tp2-heads qwen2-1.5b 4096 2 8 sw-none-compile-mb8 125 "--parallel.tp_attention=heads"
row a q-tp2-auto qwen2-1.5b 4096 2 8 sw-none-compile-mb8 125 "--parallel.tp_attention=auto"
grep -h "tp_attention=auto" $W/*/*.log | sort | uniq -c
summarize $OUT | tee $OUT/summary.txt
FIXED=(--train.compile=false --train.activation_checkpointing=none)
PARITY=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000
        --model.path="$WORK/parity-model" --train.global_batch_size=8 --train.eval_every=0 "${FIXED[@]}")
parity() {  # NAME GPUS TP ARGS...
  local name=$1 gpus=$2 tp=$3; shift 3
  step "parity-$name" "$gpus" timeout 200 python3 -m shardwise.cli train --output.dir="$WORK/runs/parity-$name" \
    --output.progress=false "${PARITY[@]}" --parallel.dp_shard=1 --parallel.tp=$tp --parallel.cp=1 \
    --train.micro_batch_size=4 "$@"
  rm -rf "$WORK/runs/parity-$name/checkpoints"
}
parity 1 0 1 &
parity tp2-seqattn 0,1 2 --parallel.tp_attention=sequences &
wait
"${CHECKS[@]}" report "$WORK" "$OUT" --seconds "$SECONDS" > "$OUT/report.txt" 2>&1; grep -i "parity\|checks:" "$OUT/report.txt"
cp .carry/run151.sh "$OUT/run.sh"
cat $OUT/summary.txt
