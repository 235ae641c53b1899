#!/usr/bin/env bash
# Device call 22 (4 GPUs of one host, main 7e9f4d1 + TITAN_EXTRA in gpu_sweep.sh): Llama-3-8B shapes, seq 4096, GB 8,
# pure bf16, compiled, NO activation checkpointing (what `shardwise plan` recommends for 80 GiB), against TorchTitan 0.2.2.
# A (GPUs 0,1): tp=2 micro-batch 2: shardwise, TorchTitan, shardwise async TP.
# B (GPUs 2,3): dp_shard=2 micro-batch 1: shardwise, TorchTitan; then Qwen2-1.5B eager full AC mb1 dp_shard=2 and tp=2.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site TITAN_EXTRA="--dtype bfloat16"
W=/tmp/w22; rm -rf $W; mkdir -p $W; T0=$SECONDS; END=545
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nvidia-smi topo -m | head -6
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
kill_row() { pkill -9 -f "$1" 2>/dev/null; sleep 2; }
row() {  # STREAM DIR PRESET SEQ TP GB NAME TIMEOUT EXTRA
  local s=$1 d=$2 preset=$3 seq=$4 tp=$5 gb=$6 name=$7 t=$8 extra=$9
  [ $((SECONDS-T0+t)) -gt $END ] && { echo "[$s/$d skipped: no time left]"; return; }
  OUT=$W/$d TP=$tp GB=$gb EXTRA="$extra" timeout -k 5 $t bash benchmarks/gpu_sweep.sh $preset $seq $name > $W/$d.sweep.log 2>&1
  grep -v "^name" $W/$d.sweep.log | tail -1; grep -m1 -o "Error.\{0,300\}" $W/$d/$name.log
  kill_row "$W/$d/"; echo "[$s/$d done at $((SECONDS-T0)) s]"
}
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=3
  row A tp2-sw llama3-8b 4096 2 8 sw-none-compile-mb2 160 "--model.dtype=bfloat16"
  row A tp2-titan llama3-8b 4096 2 8 titan-none-compile-mb2 180 ""
  row A tp2-sw-async llama3-8b 4096 2 8 sw-none-compile-mb2-asynctp 160 "--model.dtype=bfloat16"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3 WARMUP=2 STEPS=3
  row B dp2-sw llama3-8b 4096 1 8 sw-none-compile 160 "--model.dtype=bfloat16"
  row B dp2-titan llama3-8b 4096 1 8 titan-none-compile 180 ""
  export WARMUP=1 STEPS=2
  row B dp2-eager qwen2-1.5b 4096 1 8 sw-full-eager 90 ""
  row B tp2-eager qwen2-1.5b 4096 2 8 sw-full-eager 90 ""
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() for p in d.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-6000:]}" for p in sorted(w.rglob("*.log"))))
for k, r in sorted(rows.items()):
    print(f"{k:40} {r['step_time_s_median']:7.3f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} "
          f"{r['peak_mem_gib']:5.1f} GiB {r.get('device')}")
PY
