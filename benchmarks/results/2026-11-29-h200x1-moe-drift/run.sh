#!/usr/bin/env bash
# Device call 150 (1 GPU), session 36: why OLMoE's compiled run drifted 4.5e-2 from its eager reference in call 149.
# gpu_archs.sh's shapes and 50 steps on the one GPU, for OLMoE and Qwen2-MoE (which passed, as the control):
#   <arch>-1  eager blocks, sdpa's dense mask, bf16 compute (the check's reference)
#   <arch>-c1 compiled blocks, flex (the GPUs' defaults)
#   <arch>-m1 compiled blocks, sdpa's dense mask (compile alone, without flex)
#   <arch>-f1 eager blocks, dense mask, fp32 compute: the truth each bf16 run is measured against
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-150
source benchmarks/smoke_env.sh
RUN=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000
     --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 --train.activation_checkpointing=none
     --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1)
train() {  # NAME ARGS...
  local name=$1 arch=${1%-*}; shift
  step "$name" 0 timeout 280 python3 -m shardwise.cli train --output.dir="$WORK/runs/$name" --output.progress=false \
    --model.path="$WORK/$arch" --data.cache_dir="$WORK/cache/$name" "${RUN[@]}" "$@"
  rm -rf "$WORK/runs/$name/checkpoints"
}
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
EAGER=(--train.compile=false --model.packed_attention=mask)
(for a in olmoe qwen2_moe; do train "$a-1" "${EAGER[@]}"; train "$a-f1" "${EAGER[@]}" --train.dtype=float32; done) &
(for a in olmoe qwen2_moe; do train "$a-c1"; train "$a-m1" --model.packed_attention=mask; done) &
wait
python3 - "$WORK" "$OUT" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import smoke_checks as s
w, out = s.Work(Path(sys.argv[1])), Path(sys.argv[2])
runs = s.run_summaries(w)
lines = ["run          vs fp32 eager: max / mean rel gap     final loss"]
for a in ("olmoe", "qwen2_moe"):
    truth = runs.get(f"{a}-f1", {}).get("loss") or []
    for kind in ("1", "c1", "m1", "f1"):
        curve = runs.get(f"{a}-{kind}", {}).get("loss") or []
        gaps = s.rel_gaps(curve, truth) if curve and len(curve) == len(truth) else []
        figure = f"{max(gaps):.2e} / {sum(gaps) / len(gaps):.2e}" if gaps else "n/a"
        lines.append(f"{a}-{kind:<4} {figure:>36}     {curve[-1] if curve else 'n/a'}")
text = "\n".join(lines)
(out / "drift.json").write_text(json.dumps({"runs": runs, "table": text}, indent=1) + "\n")
s.write_log(w, out, text, "drift.log")
print(text)
PY
cp .carry/run150.sh "$OUT/run.sh"
