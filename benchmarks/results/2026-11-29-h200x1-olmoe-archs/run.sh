#!/usr/bin/env bash
# Device call 149 (1 GPU), session 36: the OLMoE plan on a GPU, as call 148 ran Qwen3-MoE and Mixtral (with
# Qwen2-MoE beside them). gpu_archs.sh's shapes and runs, on the one GPU
# there is: per architecture <arch>-1 (eager blocks, sdpa's dense mask: the reference) and <arch>-c1 (the GPUs'
# defaults: compiled blocks, flex) for 50 bf16 steps; smoke_checks' parity (2%) and plan-above-peak checks.
# Not a TP run: no 2-GPU kind is lent.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-149
[ -n "${REPORT_ONLY:-}" ] || source benchmarks/smoke_env.sh
RUN=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000
     --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 --train.activation_checkpointing=none
     --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1)
ARCHS="olmoe"
train() {  # NAME ARGS...
  local name=$1 arch=${1%-*}; shift
  step "$name" 0 timeout 280 python3 -m shardwise.cli train --output.dir="$WORK/runs/$name" --output.progress=false \
    --model.path="$WORK/$arch" --data.cache_dir="$WORK/cache/$name" "${RUN[@]}" "$@"
  rm -rf "$WORK/runs/$name/checkpoints"
}
if [ -z "${REPORT_ONLY:-}" ]; then
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
grep -E "^olmoe:" "$WORK/logs/prepare.log"
(for a in $ARCHS; do train "$a-1" --train.compile=false --model.packed_attention=mask; done) &
(for a in $ARCHS; do train "$a-c1"; done) &
wait
fi
python3 - "$WORK" "$OUT" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import smoke_checks as s
w, out = s.Work(Path(sys.argv[1])), Path(sys.argv[2])
rows = [r for a in ("olmoe",) for r in s.check_parity(w, "cuda", f"{a}-1", a)]
rows += s.check_plans(w, "cuda")
text = s.table(rows)
(out / "archs.json").write_text(json.dumps({"checks": rows, "runs": s.run_summaries(w), "table": text}, indent=1) + "\n")
s.write_log(w, out, text, "archs.log")
print(text)
PY
cp .carry/run149.sh "$OUT/run.sh"
