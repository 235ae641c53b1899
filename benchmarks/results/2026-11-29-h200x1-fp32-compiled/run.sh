#!/usr/bin/env bash
# Device call 159 (1 GPU), session 37: fp32 compute compiled on a GPU with K/V repeated (shardwise.sdpa), main 4f0859d.
# gpu_archs.sh's Llama folder (8 query, 4 KV heads), seq 1024, micro-batch 4, 8 sequences a step, 50 steps, fp32:
#   llama-e  eager blocks, sdpa's dense mask (call 158's reference run)
#   llama-c  compiled blocks, packed rows through flex, rows without a boundary through shardwise.sdpa (the defaults)
# side by side on the one GPU (not timed); each step's loss compared.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) WORK=/tmp/archs-work-159
source benchmarks/smoke_env.sh
"${CHECKS[@]}" prepare-archs "$WORK" > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
RUN=(--train.seq_len=1024 --data.max_bytes=1000000 --train.global_batch_size=8 --train.micro_batch_size=4
     --train.eval_every=0 --train.activation_checkpointing=none --parallel.dp_shard=1 --parallel.cp=1 --parallel.tp=1
     --train.dtype=float32 --train.steps=50 --train.lr=1e-3 --train.warmup_steps=10 --model.path=$WORK/llama)
train() {  # NAME ARGS...
  local name=$1; shift
  step "$name" 0 timeout 200 python3 -m shardwise.cli train --output.dir="$WORK/runs/$name" --output.progress=false \
    --data.cache_dir="$WORK/cache/$name" "${RUN[@]}" "$@"
  rm -rf "$WORK/runs/$name/checkpoints"
}
train llama-e --train.compile=false --model.packed_attention=mask &
train llama-c &
wait
python3 - "$WORK" "$OUT" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import smoke_checks as s
w, out = s.Work(Path(sys.argv[1])), Path(sys.argv[2])
runs = s.run_summaries(w)
ref, got = (runs.get(n, {}).get("loss") or [] for n in ("llama-e", "llama-c"))
gaps = s.rel_gaps(got, ref) if got and len(got) == len(ref) else []
text = (f"llama fp32 compiled vs eager, {len(gaps)} steps: max rel gap {max(gaps):.2e}, mean {sum(gaps) / len(gaps):.2e}; "
        f"final {got[-1]:.4f} vs {ref[-1]:.4f}; peaks {runs['llama-c']['peak_mem_gib']:.2f} / "
        f"{runs['llama-e']['peak_mem_gib']:.2f} GiB" if gaps else "n/a")
(out / "compiled.json").write_text(json.dumps({"runs": runs, "table": text}, indent=1) + "\n")
s.write_log(w, out, text, "compiled.log")
print(text)
PY
grep -h "done:\|rror" "$WORK"/logs/llama-*.log | head
cp .carry/run159.sh "$OUT/run.sh"
