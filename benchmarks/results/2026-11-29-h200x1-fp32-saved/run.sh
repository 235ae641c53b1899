#!/usr/bin/env bash
# Device call 157 (1 GPU), session 37: what gpu_archs.sh's one-GPU llama run saves for backward in fp32 and in bf16
# (eager, dense mask, micro-batch 4, seq 1024), every saved tensor by shape (.carry/saved_probe.py), one process.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-157
source benchmarks/smoke_env.sh
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
export RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511
for run in llama:float32 llama:bfloat16 mixtral:float32; do
  arch=${run%:*} dtype=${run#*:}
  echo "== $arch $dtype"
  timeout 120 python3 .carry/saved_probe.py --output.dir="$WORK/runs/$arch-$dtype" --output.progress=false \
    --model.path="$WORK/$arch" --data.cache_dir="$WORK/cache/$arch" --train.steps=2 --train.seq_len=1024 \
    --data.max_bytes=1000000 --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 \
    --train.activation_checkpointing=none --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1 \
    --train.compile=false --model.packed_attention=mask --train.dtype=$dtype 2>&1 | grep -A15 "saved for\|done:\|rror"
done 2>&1 | tee "$OUT/saved.txt"
cp .carry/run157.sh "$OUT/run.sh"; cp .carry/saved_probe.py "$OUT/"
