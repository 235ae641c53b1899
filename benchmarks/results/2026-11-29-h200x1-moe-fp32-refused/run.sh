#!/usr/bin/env bash
# Device call 153 (1 GPU), session 37: can gpu_archs.sh prove the MoE families' layouts in fp32 compute, where
# bf16 top-k routing flips experts between two orders of summation (call 150)? gpu_archs.sh's shapes, 50 steps:
#   <arch>-f1   eager blocks, sdpa's dense mask, fp32 compute (the reference)
#   <arch>-cf1  compiled blocks, flex (the GPUs' defaults), fp32 compute
#   <arch>-c1   compiled blocks, flex, bf16 compute (what users run), against <arch>-1, eager bf16
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-153
source benchmarks/smoke_env.sh
RUN=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000
     --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 --train.activation_checkpointing=none
     --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1)
train() {  # NAME ARGS...
  local name=$1 arch=${1%-*}; shift
  step "$name" 0 timeout 200 python3 -m shardwise.cli train --output.dir="$WORK/runs/$name" --output.progress=false \
    --model.path="$WORK/$arch" --data.cache_dir="$WORK/cache/$name" "${RUN[@]}" "$@"
  rm -rf "$WORK/runs/$name/checkpoints"
}
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
EAGER=(--train.compile=false --model.packed_attention=mask)
(for a in olmoe qwen2_moe mixtral qwen3_moe; do train "$a-f1" "${EAGER[@]}" --train.dtype=float32; done) &
(for a in olmoe qwen2_moe mixtral qwen3_moe; do train "$a-cf1" --train.dtype=float32; done) &
wait
echo "runs took $SECONDS s"
python3 - "$WORK" "$OUT" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import smoke_checks as s
w, out = s.Work(Path(sys.argv[1])), Path(sys.argv[2])
runs = s.run_summaries(w)
lines = ["run            vs eager fp32: max / mean rel gap   final loss"]
for a in ("olmoe", "qwen2_moe", "mixtral", "qwen3_moe"):
    ref = runs.get(f"{a}-f1", {}).get("loss") or []
    curve = runs.get(f"{a}-cf1", {}).get("loss") or []
    gaps = s.rel_gaps(curve, ref) if curve and len(curve) == len(ref) else []
    figure = f"{max(gaps):.2e} / {sum(gaps) / len(gaps):.2e}" if gaps else "n/a"
    lines.append(f"{a + '-cf1':<14} {figure:>34}   {curve[-1] if curve else 'n/a'}")
text = "\n".join(lines)
(out / "drift.json").write_text(json.dumps({"runs": runs, "table": text}, indent=1) + "\n")
s.write_log(w, out, text, "drift.log")
print(text)
PY
cp .carry/run153.sh "$OUT/run.sh"
