#!/usr/bin/env bash
# Device call 14 (2xH200): Llama-3.1-8B shapes at seq 32k, bf16 weights, micro-batch 1, GB 2, compiled, unpacked rows:
# without activation checkpointing dp_shard=2 (the plan says 186 GiB: out of memory) vs cp=2 (plan 127 GiB), and both
# with full checkpointing (what dp_shard=2 needs to fit), all in one call.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w; mkdir -p $W; T0=$SECONDS
row() {  # DIR NAME TIMEOUT EXTRA
  [ $((SECONDS-T0+$3)) -gt 570 ] && { echo "[$1 skipped: no time left]"; return; }
  OUT=$W/$1 TP=1 GB=2 WARMUP=1 STEPS=2 EXTRA="$4" timeout -k 5 $3 bash benchmarks/gpu_sweep.sh llama3.1-8b 32768 $2 2>&1 | grep -v "^name" | tail -2
  grep -m1 "warning: .*memory\|needs about" $W/$1/$2.log
  grep -m1 -o "OutOfMemoryError.\{0,300\}" $W/$1/$2.log
  pkill -9 -f "shardwise.cli" 2>/dev/null; sleep 2
  echo "[$1 done at $((SECONDS-T0)) s]"
}
BF="--model.dtype=bfloat16"
row dp2-noac sw-none-compile 110 "$BF --parallel.cp=1"
row cp2-noac sw-none-compile 150 "$BF --parallel.cp=2"
row dp2-full sw-full-compile 120 "$BF --parallel.cp=1"
row cp2-full sw-full-compile 120 "$BF --parallel.cp=2"
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() for p in d.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-6000:]}" for p in sorted(w.rglob("*.log"))))
for k, r in sorted(rows.items()):
    print(f"{k:30} {r['step_time_s_median']:7.2f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} {r['peak_mem_gib']:5.1f} GiB {r['device']}")
PY
