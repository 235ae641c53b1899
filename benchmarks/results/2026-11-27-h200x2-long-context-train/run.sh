#!/usr/bin/env bash
# Device call 89 (2 GPUs; call 88, the same without --parallel.tp=1, was refused: the default tp=2 leaves no room for cp=2): `shardwise train` at long context on real data, as a user runs it: Qwen2-0.5B shapes,
# cp=2, seq 16,384, the stdlib corpus packed (documents of a few thousand tokens), 40 steps of 2 sequences, eval
# every 20, compiled (the default), empty inductor caches; first the default attention (flex block masks, built
# by flex.block_mask), then --model.packed_attention=mask. Each run's wall time from launch, its losses, and
# dynamo's recompiles (TORCH_LOGS=recompiles) are kept.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1 TORCH_LOGS=recompiles
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w88; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
ARGS=(--model.preset=qwen2-0.5b --parallel.cp=2 --parallel.tp=1 --train.seq_len=16384 --train.steps=40 --train.global_batch_size=2
      --train.micro_batch_size=1 --train.eval_every=20 --data.val_batches=1 --checkpoint.every=0 --output.progress=false)
for att in auto mask; do
  s=$SECONDS
  TORCHINDUCTOR_CACHE_DIR=$W/cache-$att TRITON_CACHE_DIR=$W/triton-$att timeout 200 \
    python3 -m shardwise.cli train "${ARGS[@]}" --model.packed_attention=$att \
    --output.dir=$W/$att > $W/$att.log 2>&1
  echo "$att: exit $? in $((SECONDS - s)) s; recompiles: $(grep -c 'Recompiling' $W/$att.log)"
  grep -a "note\|Error" $W/$att.log | sort | uniq -c | head -8 | cut -c1-250
  mkdir -p $OUT/$att; cp $W/$att.log $OUT/$att/train.log; cp $W/$att/metrics.jsonl $OUT/$att/ 2>/dev/null
done
python3 - $OUT <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1]); runs = {}
for att in ("auto", "mask"):
    p = out / att / "metrics.jsonl"
    if not p.exists(): continue
    recs = [json.loads(l) for l in p.read_text().splitlines() if l.strip()]
    steps = [r for r in recs if "loss" in r]
    runs[att] = steps
    tps = [r["tokens_per_s_per_device"] for r in steps[10:] if r.get("tokens_per_s_per_device")]
    vals = [r["val_loss"] for r in steps if r.get("val_loss") is not None]
    print(att, "steps", len(steps), "loss", round(steps[0]["loss"], 4), "->", round(steps[-1]["loss"], 4),
          "val", [round(v, 4) for v in vals], "tokens/s/GPU median of steps 11+", round(statistics.median(tps)) if tps else None,
          "step 1 done at", round(steps[0]["elapsed_s"], 1), "s; last at", round(steps[-1]["elapsed_s"], 1), "s; peak GiB",
          max(r.get("peak_mem_gib") or 0 for r in steps))
if len(runs) == 2:
    gaps = [abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(runs["auto"], runs["mask"])]
    print("flex vs mask: largest relative loss gap", f"{max(gaps):.2e}", "mean", f"{sum(gaps) / len(gaps):.2e}")
PY
cp .carry/run88.sh $OUT/run.sh
