#!/usr/bin/env bash
# Device call 15: CUDA graphs for compiled blocks again (cudagraph_mark_step_begin before each micro-batch), with a
# loss check against the plain compiled path; tp=2 without sequence parallelism; cp=2 at 32k profiled (exposed comm).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w15 L=/tmp/loss15; rm -rf $W $L; mkdir -p $W $L; T0=$SECONDS
row() {  # DIR TP TIMEOUT PRESET SEQ NAME [ENV...]
  local d=$1 tp=$2 t=$3 preset=$4 seq=$5 name=$6; shift 6
  [ $((SECONDS-T0+t)) -gt 570 ] && { echo "[$d skipped: no time left]"; return; }
  env OUT=$W/$d TP=$tp GB=8 WARMUP=2 STEPS=5 "$@" timeout -k 5 $t bash benchmarks/gpu_sweep.sh $preset $seq $name 2>&1 | grep -v "^name" | tail -2
  grep -m1 -o "Error.\{0,400\}" $W/$d/$name.log
  pkill -9 -f "shardwise.cli" 2>/dev/null; sleep 1
  echo "[$d done at $((SECONDS-T0)) s]"
}
row dp2 1 100 qwen2-1.5b 4096 sw-none-compile-mb4
row tp2 2 100 qwen2-1.5b 4096 sw-none-compile-mb4
row tp2-cg 2 120 qwen2-1.5b 4096 sw-none-compile-mb4 SW_EXPERIMENT_COMPILE_MODE=reduce-overhead
for mode in default reduce-overhead; do
  m=$mode; [ $mode = default ] && m=""
  SW_EXPERIMENT_COMPILE_MODE=$m PYTHONPATH=/tmp/site:$PWD/src timeout 100 python3 -m shardwise.cli train --parallel.tp=2 \
    --parallel.dp_shard=1 --train.steps=30 --train.eval_every=0 --train.compile=true --output.dir=$L/loss-$mode \
    --output.progress=false > $L/loss-$mode.log 2>&1
  echo "loss-$mode exit $? at $((SECONDS-T0)) s"; tail -n 2 $L/loss-$mode.log
done
python3 - $L <<'PY'
import json, sys
loss = {m: [json.loads(l)["loss"] for l in open(f"{sys.argv[1]}/loss-{m}/metrics.jsonl")] for m in ("default", "reduce-overhead")}
a, b = loss["default"], loss["reduce-overhead"]
print("losses default:", [round(x, 4) for x in a[::5]]); print("losses cudagraph:", [round(x, 4) for x in b[::5]])
print("max |diff| over", min(len(a), len(b)), "steps:", max(abs(x - y) for x, y in zip(a, b)))
PY
row tp2-nosp 2 100 qwen2-1.5b 4096 sw-none-compile-mb4 EXTRA=--parallel.sequence_parallel=false
row cp2-full-prof 1 150 llama3.1-8b 32768 sw-full-compile GB=2 WARMUP=1 STEPS=2 PROFILE=true "EXTRA=--model.dtype=bfloat16 --parallel.cp=2"
cp $W/cp2-full-prof/sw-full-compile/profile-ops.txt $OUT/cp2-32k-profile-ops.txt 2>/dev/null
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() for p in d.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
logs = sorted([*w.rglob("*.log"), *pathlib.Path("/tmp/loss15").glob("*.log")])
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-5000:]}" for p in logs))
for k, r in sorted(rows.items()):
    p = r.get("profile") or {}
    print(f"{k:36} {r['step_time_s_median']:7.3f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} "
          f"{r['peak_mem_gib']:5.1f} GiB {r['device']} {json.dumps({k: v for k, v in p.items() if k.endswith('_ms')})}")
PY
