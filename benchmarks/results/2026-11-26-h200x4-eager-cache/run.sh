#!/usr/bin/env bash
# Device call 25 (4 GPUs of one host; main cf4f96f; .carry/eager/src = branch wip/eager-param-cache, 2a697ed).
# A (GPUs 0,1): Qwen2-1.5B shapes, seq 4096, GB 8, eager, full AC, micro-batch 1, tp=2: main, branch, main, branch.
# B (GPUs 2,3): Llama-3-8B shapes, seq 4096, GB 8, pure bf16, compiled, no AC, profiled (bench.profile):
#   dp_shard=2 micro-batch 1 with blocks kept gathered, tp=2 micro-batch 2.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w25; rm -rf $W /tmp/eager; mkdir -p $W /tmp/eager; T0=$SECONDS; END=560
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
kill_row() { pkill -9 -f "$1" 2>/dev/null; sleep 2; }
row() {  # STREAM DIR PRESET SEQ TP GB NAME TIMEOUT EXTRA   (env ROOT: the tree to run, TITAN_EXTRA: titan rows)
  local s=$1 d=$2 preset=$3 seq=$4 tp=$5 gb=$6 name=$7 t=$8 extra=$9
  [ $((SECONDS-T0+t)) -gt $END ] && { echo "[$s/$d skipped: no time left]"; return; }
  (cd ${ROOT:-$OLDPWD_REPO} && OUT=$W/$d TP=$tp GB=$gb EXTRA="$extra" timeout -k 5 $t \
    bash benchmarks/gpu_sweep.sh $preset $seq $name > $W/$d.sweep.log 2>&1)
  grep -v "^name" $W/$d.sweep.log | tail -1; grep -m1 -o "Error.\{0,300\}" $W/$d/$name.log
  kill_row "$W/$d/"; echo "[$s/$d done at $((SECONDS-T0)) s]"
}
export OLDPWD_REPO=$PWD
cp -r benchmarks /tmp/eager/ && cp -r .carry/eager/src /tmp/eager/
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=1 STEPS=3
  for i in 1 2; do
    row A tp2-eager-main-$i qwen2-1.5b 4096 2 8 sw-full-eager 90 ""
    ROOT=/tmp/eager row A tp2-eager-cache-$i qwen2-1.5b 4096 2 8 sw-full-eager 90 ""
  done
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3 WARMUP=2 STEPS=3 PROFILE=true
  row B dp2-keep-prof llama3-8b 4096 1 8 sw-none-compile 170 "--model.dtype=bfloat16 --parallel.reshard_after_forward=false"
  row B tp2-prof llama3-8b 4096 2 8 sw-none-compile-mb2 170 "--model.dtype=bfloat16"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
mkdir -p $OUT/prof; for d in dp2-keep-prof tp2-prof; do cp $W/$d/*/profile-ops.txt $OUT/prof/$d-ops.txt 2>/dev/null; done
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() for p in d.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-6000:]}" for p in sorted(w.rglob("*.log"))))
for k, r in sorted(rows.items()):
    p = r.get("profile") or {}
    extra = f" busy {p['gpu_busy_ms'] / p['wall_ms']:.0%} exposed comm {p['exposed_comm_ms']:.1f} ms" if "wall_ms" in p else ""
    print(f"{k:44} {r['step_time_s_median']:7.3f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} "
          f"{r['peak_mem_gib']:5.1f} GiB{extra}")
PY
