#!/usr/bin/env bash
# Device call 125 (2 GPUs), session 30: issue 9's Qwen2-1.5B rows on main (614ae64's tree) with 20 timed steps each
# (call 124's 4 steps spread by up to 8% within a row): dp_shard=2 micro-batch 4, tp=2 micro-batch 8 plain and with
# async TP, the three twice, interleaved, in one stream. Seq 4096, GB 8, fp32 master weights, compiled, no
# checkpointing, warmup 3. Prints each row's median, mean and fastest step and the ratios to the dp_shard=2 rows.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=545
row() {  # NAME TP ROW MODE
  local n=$1 tp=$2 name=$3 mode=$4 extra="" t=110
  [ "$mode" = async ] && extra=--parallel.async_tp=true
  local d=$n-tp$tp-$mode
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  OUT=$OUT/$d TP=$tp GB=8 WARMUP=3 STEPS=20 EXTRA="$extra" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh qwen2-1.5b 4096 $name > $OUT/$d.txt 2>&1
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
row A 1 sw-none-compile-mb4 plain; row B 2 sw-none-compile-mb8 plain; row C 2 sw-none-compile-mb8 async
row D 1 sw-none-compile-mb4 plain; row E 2 sw-none-compile-mb8 plain; row F 2 sw-none-compile-mb8 async
cp .carry/run125.sh $OUT/run.sh
python3 - "$OUT" <<'PY' | tee $OUT/summary.txt
import glob, json, statistics, sys
rows = {}
for f in sorted(glob.glob(f"{sys.argv[1]}/*/*.json")):
    d = json.load(open(f))
    rows[f.split("/")[-2]] = (d["step_times_s"], d["mfu"], d["peak_mem_gib"], d["versions"]["shardwise"])
dp = [statistics.median(t) for n, (t, *_) in rows.items() if "-tp1-" in n]
ref = statistics.mean(dp) if dp else float("nan")
print(f"{'row':16} {'median s':>9} {'mean s':>8} {'min s':>7} {'max s':>7} {'MFU':>6} {'GiB':>5}  vs mean dp_shard=2 median   code")
for n, (t, mfu, gib, code) in rows.items():
    m = statistics.median(t)
    print(f"{n:16} {m:9.4f} {statistics.mean(t):8.4f} {min(t):7.4f} {max(t):7.4f} {mfu:6.1%} {gib:5.1f}  {ref / m:6.3f}x   {code}")
PY
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */ ?-tp*.txt) 2>/dev/null && rm -r $OUT/?-tp*
