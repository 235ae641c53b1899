#!/usr/bin/env bash
# Device call 20 (4 GPUs of one host; main 361762b + wip/tp-cudagraphs + async TP that fuses: tp.gather_tokens shapes
# the gather so inductor's micro-pipeline pattern matches, q/k/v bias added apart, reorder passes in apply_async_tp):
# B (GPUs 0,1): Qwen2-1.5B seq 4096 GB 8 mb 4 compiled no AC: tp=2, tp=2 async TP, dp_shard=2.
# C (GPUs 2,3): tiny Qwen2 tp=2 micro-batch 2, 30 steps compiled, losses without/with async TP.
# Then all 4 GPUs: Llama-3.1-8B 64k full AC cp=4 ring (call 19's row timed out at 120 s).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w20; rm -rf $W; mkdir -p $W; T0=$SECONDS; END=470
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nvidia-smi topo -m | head -6
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
kill_row() { pkill -9 -f "$1" 2>/dev/null; sleep 2; }
row() {  # STREAM DIR PRESET SEQ TP GB NAME TIMEOUT EXTRA
  local s=$1 d=$2 preset=$3 seq=$4 tp=$5 gb=$6 name=$7 t=$8 extra=$9
  [ $((SECONDS-T0+t)) -gt $END ] && { echo "[$s/$d skipped: no time left]"; return; }
  OUT=$W/$d TP=$tp GB=$gb WARMUP=${WARMUP:-1} STEPS=${STEPS:-2} EXTRA="$extra" timeout -k 5 $t \
    bash benchmarks/gpu_sweep.sh $preset $seq $name > $W/$d.sweep.log 2>&1
  grep -v "^name" $W/$d.sweep.log | tail -1; grep -m1 -o "Error.\{0,300\}" $W/$d/$name.log
  kill_row "$W/$d/"; echo "[$s/$d done at $((SECONDS-T0)) s]"
}
check() {  # NAME NPROC OVERRIDES
  PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests timeout 100 torchrun --standalone --nproc-per-node=$2 \
    tests/_cp_attention_worker.py --overrides "$3" --out $OUT/check-$1.pt > $W/check-$1.log 2>&1
  PYTHONPATH=/tmp/site python3 -c "
import torch; r = torch.load('$OUT/check-$1.pt')
worst = {p: round(max(max(rk[p]) for rk in r['ranks']), 5) for p in r['ranks'][0]}
print('check $1', r['kernel'], r['dtype'], worst); raise SystemExit(max(worst.values()) > 0.02)" \
    || { tail -25 $W/check-$1.log; return 1; }
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=0,1
  row B tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 80 ""
  row B tp2-async qwen2-1.5b 4096 2 8 sw-none-compile-mb4-asynctp 90 ""
  row B dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
}
stream_c() {
  export CUDA_VISIBLE_DEVICES=2,3
  for a in false true; do
    PYTHONPATH=/tmp/site:$PWD/src timeout 120 python3 -m shardwise.cli train --parallel.tp=2 --parallel.dp_shard=1 \
      --train.steps=30 --train.eval_every=0 --train.compile=true --parallel.async_tp=$a --train.micro_batch_size=2 \
      --output.dir=$W/loss-$a --output.progress=false > $W/loss-$a.log 2>&1 || tail -20 $W/loss-$a.log
    grep -m3 "async TP\|fuse" $W/loss-$a.log; kill_row "$W/loss-$a"
  done
  python3 - $W <<'PY'
import json, sys
try:
    a, b = ([json.loads(l)["loss"] for l in open(f"{sys.argv[1]}/loss-{g}/metrics.jsonl")] for g in ("false", "true"))
    print("C: losses without / with async TP:", [round(x, 4) for x in a[::6]], [round(x, 4) for x in b[::6]])
    print("C: largest difference over", min(len(a), len(b)), "steps:", max(abs(x - y) for x, y in zip(a, b)))
except Exception as e:
    print("C: loss check incomplete:", e)
PY
}
stream_d() {
  unset CUDA_VISIBLE_DEVICES
  row D cp4-64k-ring llama3.1-8b 65536 1 4 sw-full-compile 200 "--model.dtype=bfloat16 --parallel.cp=4 --parallel.cp_exchange=ring"
}
WARMUP=2 STEPS=5
stream_b > $W/B.out 2>&1 &
stream_c > $W/C.out 2>&1 &
wait
WARMUP=1 STEPS=2
stream_d > $W/D.out 2>&1
cat $W/B.out $W/C.out $W/D.out
grep -h "fuse\|async TP found" $W/tp2-async/*.log | sort | uniq -c | head -8
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() and not d.name.startswith("loss")
        for p in d.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-6000:]}" for p in sorted(w.rglob("*.log"))))
for k, r in sorted(rows.items()):
    print(f"{k:34} {r['step_time_s_median']:7.3f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} "
          f"{r['peak_mem_gib']:5.1f} GiB {r['device']}")
PY
