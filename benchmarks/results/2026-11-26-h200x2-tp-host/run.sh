#!/usr/bin/env bash
# Device call 13: TP=2 host overhead experiments (Qwen2-1.5B, seq 4096, GB 8): CUDA graphs for compiled blocks
# (SW_EXPERIMENT_COMPILE_MODE=reduce-overhead), NCCL flight recorder off (TORCH_FR_BUFFER_SIZE=0), beside dp_shard=2
# and tp=2 as they are; then a loss check of the CUDA-graph path against the plain compiled path (tiny Qwen2, tp=2).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w L=/tmp/loss; mkdir -p $W $L; T0=$SECONDS
row() {  # DIR TP TIMEOUT NAME [ENV...]
  local d=$1 tp=$2 t=$3 name=$4; shift 4
  [ $((SECONDS-T0+t)) -gt 560 ] && { echo "[$d skipped: no time left]"; return; }
  env OUT=$W/$d TP=$tp GB=8 WARMUP=2 STEPS=5 "$@" timeout -k 5 $t bash benchmarks/gpu_sweep.sh qwen2-1.5b 4096 $name 2>&1 | grep -v "^name" | tail -2
  grep -m1 -o "Error.\{0,300\}" $W/$d/$name.log
  pkill -9 -f "shardwise.cli" 2>/dev/null; sleep 1
  echo "[$d done at $((SECONDS-T0)) s]"
}
row dp2 1 100 sw-none-compile-mb4
row tp2 2 100 sw-none-compile-mb4
row tp2-cg 2 150 sw-none-compile-mb4 SW_EXPERIMENT_COMPILE_MODE=reduce-overhead
for mode in default reduce-overhead; do
  m=$mode; [ $mode = default ] && m=""
  SW_EXPERIMENT_COMPILE_MODE=$m timeout 120 python3 -m shardwise.cli train --parallel.tp=2 --parallel.dp_shard=1 --train.steps=30 \
    --train.eval_every=0 --train.compile=true --output.dir=$L/loss-$mode --output.progress=false > $L/loss-$mode.log 2>&1
  echo "loss-$mode exit $? at $((SECONDS-T0)) s"; tail -n 2 $L/loss-$mode.log
done
python3 - $L <<'PY'
import json, sys
loss = {m: [json.loads(l)["loss"] for l in open(f"{sys.argv[1]}/loss-{m}/metrics.jsonl")] for m in ("default", "reduce-overhead")}
a, b = loss["default"], loss["reduce-overhead"]
print("losses default:", [round(x, 4) for x in a[::5]]); print("losses cudagraph:", [round(x, 4) for x in b[::5]])
print("max |diff| over", min(len(a), len(b)), "steps:", max(abs(x - y) for x, y in zip(a, b)))
PY
row tp2-fr0 2 100 sw-none-compile-mb4 TORCH_FR_BUFFER_SIZE=0
row tp2-eager-fr0 2 80 sw-full-eager TORCH_FR_BUFFER_SIZE=0 STEPS=3 WARMUP=1
row tp2-fullac-cg 2 120 sw-full-compile SW_EXPERIMENT_COMPILE_MODE=reduce-overhead
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() for p in d.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-5000:]}" for p in sorted([*w.rglob("*.log"), *pathlib.Path("/tmp/loss").glob("*.log")])))
for k, r in sorted(rows.items()):
    print(f"{k:36} {r['step_time_s_median']:7.3f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} {r['peak_mem_gib']:5.1f} GiB {r['device']}")
PY
