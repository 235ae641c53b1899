#!/usr/bin/env bash
# Device call 83 (2 GPUs): README's GPU quick start on this session's tree: `shardwise train` with no arguments
# (tp=2 over both GPUs, compiled, packed rows through flex), its losses and peak against `shardwise plan`'s total.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w83; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
timeout 200 python3 -m shardwise.cli train --output.dir=$W/default --output.progress=false > $W/default.log 2>&1
echo "default: exit $? after $((SECONDS - t0)) s"
grep -h "note\|done:\|rror" $W/default.log | cut -c1-250
python3 -m shardwise.cli plan --json > $W/plan.json 2> $W/plan.err
python3 - $W <<'PY' | tee $OUT/summary.txt
import json, pathlib, sys
w = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (w / "default" / "metrics.jsonl").read_text().splitlines()]
loss = [r["loss"] for r in rows if r.get("loss") is not None]
val = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
peak = max(r.get("peak_mem_gib") or 0 for r in rows)
plan = json.loads((w / "plan.json").read_text())["memory_bytes"]["total"] / 2**30
print(f"default job: loss {loss[0]:.3f} -> {loss[-1]:.3f} ({loss[-1] / loss[0] - 1:+.0%}), val_loss {val[0]:.3f} -> {val[-1]:.3f}; "
      f"peak {peak:.3f} GiB, plan {plan:.3f} GiB (plan/peak {plan / peak:.2f})")
PY
cp $W/default.log $W/default/metrics.jsonl $W/plan.json $OUT/ 2>/dev/null
cp .carry/run83.sh $OUT/run.sh
