#!/usr/bin/env bash
# Device call 126 (2 GPUs), session 30: are call 125's slow tp=2 steps (0.62-0.66 s among 0.37-0.39 s) Python's own
# full garbage collections? Qwen2-1.5B tp=2 micro-batch 8, 20 timed steps, compiled, as calls 124-125, with the
# working tree's shardwise.collect: --train.gc_every=0 (Python's own collector, what main did) against the default
# (collect once after the first step, freeze, then every 50 steps on every rank). .carry/xgc logs every collection
# of 10 ms or more per rank.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
export PYTHONPATH=$PWD/.carry/xgc:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=330
row() {  # NAME GC_EVERY
  local d=$1-gc$2 t=100
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  OUT=$OUT/$d TP=2 GB=8 WARMUP=3 STEPS=20 EXTRA="--train.gc_every=$2" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh qwen2-1.5b 4096 sw-none-compile-mb8 > $OUT/$d.txt 2>&1
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
row A 0; row B 50; row C 0; row D 50
cp .carry/run126.sh $OUT/run.sh; cp .carry/xgc/sitecustomize.py $OUT/xgc-sitecustomize.py
python3 - "$OUT" <<'PY' | tee $OUT/summary.txt
import glob, json, re, statistics, sys
for f in sorted(glob.glob(f"{sys.argv[1]}/*/*.json")):
    d, name = json.load(open(f)), f.split("/")[-2]
    t = d["step_times_s"]
    log = open(f[:-5] + ".log").read()
    gcs = re.findall(r"\[x-gc\] rank (\d) gen (\d) ([\d.]+) ms", log)
    full = [float(ms) for _, g, ms in gcs if g == "2"]
    print(f"{name:8} median {statistics.median(t):.4f} mean {statistics.mean(t):.4f} max {max(t):.4f} "
          f"slow(>0.45) {sum(x > 0.45 for x in t):2d}  MFU {d['mfu']:.1%}  gen-2 collections >=10 ms: {len(full)}"
          f" ({', '.join(f'{x:.0f}' for x in full[:8])} ms)")
    print("  steps: " + " ".join(f"{x:.3f}" for x in t))
PY
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */ ?-gc*.txt) 2>/dev/null && rm -r $OUT/?-gc*
