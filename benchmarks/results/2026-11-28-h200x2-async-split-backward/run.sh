#!/usr/bin/env bash
# Device call 132 (2 GPUs), session 32: async TP splitting what inductor's rule leaves to its reorder passes. Since
# shardwise.fuse (session 28) the backward's input-gradient reduce-scatters have one producing matmul the
# micro-pipeline pass matches, but it keeps them whole because weight-gradient matmuls beside them could hide them
# (its reorder passes; session 11: that overlap costs the matmuls what it hides). Qwen2-1.5B seq 4096 GB 8, fp32
# master weights, compiled, no AC; dp_shard=2 micro-batch 4, tp=2 micro-batch 8: plain, async TP (main), async TP
# with the rule off (X_SPLIT=all), and with the reorder passes off too (X_SPLIT=noreorder); .carry/xsplit logs each
# decision (X_LOG=1). Each row its own inductor cache. Warmup 3, median of 20. Last: the rows' table.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
export PYTHONPATH=$PWD/.carry/xsplit:/tmp/site X_LOG=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
T0=$SECONDS END=560
row() {  # NAME TP MB SPLIT EXTRA
  local d=$1 t=100
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  X_SPLIT=$4 TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$d OUT=$OUT/$d TP=$2 GB=8 WARMUP=3 STEPS=20 EXTRA="$5" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh qwen2-1.5b 4096 sw-none-compile-mb$3 > $OUT/$d.txt 2>&1
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
  grep -h "x-split" $OUT/$d/*.log | sort | uniq -c | tee $OUT/$d.decisions.txt
}
A="--parallel.async_tp=true"
row A-dp2 1 4 "" ""; row B-tp2-plain 2 8 "" ""; row C-async-main 2 8 "" "$A"; row D-async-all 2 8 all "$A"
row E-async-noreorder 2 8 noreorder "$A"; row F-async-all 2 8 all "$A"; row G-tp2-plain 2 8 "" ""
cp .carry/run132.sh $OUT/run.sh; cp .carry/xsplit/sitecustomize.py $OUT/xsplit-sitecustomize.py
cat $OUT/*.decisions.txt > $OUT/decisions.txt
python3 - "$OUT" <<'PY' | tee $OUT/summary.txt
import glob, json, statistics, sys
rows = {f.split("/")[-2]: json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[1]}/*/*.json"))}
base = {k: r["step_time_s_median"] for k, r in rows.items()}
dp2 = next((v for k, v in base.items() if "dp2" in k), None)
plain = [v for k, v in base.items() if "plain" in k]
for k, r in rows.items():
    t = r["step_time_s_median"]
    ratio = f"{dp2 / t:.3f}x dp2" if dp2 else ""
    vs = f"{min(plain) / t:.3f}x-{max(plain) / t:.3f}x plain" if plain and "dp2" not in k else ""
    print(f"{k:20} {t:.4f} s {r['tokens_per_s_per_device']:8.0f} tok/s/GPU {r['mfu']:6.1%} {r['peak_mem_gib']:5.1f} GiB"
          f"  {ratio:12} {vs}  {r['versions'].get('shardwise', '')}")
PY
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */ ?-*.txt) 2>/dev/null && rm -r $OUT/?-*
