#!/usr/bin/env bash
# Device call 18 (4 GPUs of one host, two 2-GPU streams side by side, main 361762b + wip/tp-cudagraphs):
# A (GPUs 0,1): CP attention check in bf16 (chunk pair, ring, masked; eager and compiled) against fp32 one-process
#   attention, then Llama-3.1-8B 32k cp=2 all-gather vs ring vs dp_shard=2 (full AC), ring without AC.
# B (GPUs 2,3): train.cudagraphs loss check (tiny, tp=2, 30 steps with/without), then Qwen2-1.5B seq 4096 GB 8 mb 4
#   compiled no AC: dp_shard=2, tp=2, tp=2 + CUDA graphs, bf16 master with and without graphs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w18; rm -rf $W; mkdir -p $W; T0=$SECONDS; END=535
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
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1
  check bf16-2 2 '{"device": "cuda", "shape": [1, 32, 8, 128, 2048]}' || { echo "A: check failed"; return; }
  echo "[A/check done at $((SECONDS-T0)) s]"
  local BF="--model.dtype=bfloat16"
  row A cp2-32k llama3.1-8b 32768 1 2 sw-full-compile 100 "$BF --parallel.cp=2"
  row A cp2-32k-ring llama3.1-8b 32768 1 2 sw-full-compile 100 "$BF --parallel.cp=2 --parallel.cp_exchange=ring"
  row A dp2-32k llama3.1-8b 32768 1 2 sw-full-compile 90 "$BF --parallel.cp=1"
  row A cp2-32k-ring-noac llama3.1-8b 32768 1 2 sw-none-compile 100 "$BF --parallel.cp=2 --parallel.cp_exchange=ring"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3
  for graphs in false true; do
    PYTHONPATH=/tmp/site:$PWD/src timeout 120 python3 -m shardwise.cli train --parallel.tp=2 --parallel.dp_shard=1 \
      --train.steps=30 --train.eval_every=0 --train.compile=true --train.cudagraphs=$graphs --output.dir=$W/loss-$graphs \
      --output.progress=false > $W/loss-$graphs.log 2>&1 || tail -20 $W/loss-$graphs.log
    kill_row "$W/loss-$graphs"
  done
  python3 - $W <<'PY'
import json, sys
try:
    a, b = ([json.loads(l)["loss"] for l in open(f"{sys.argv[1]}/loss-{g}/metrics.jsonl")] for g in ("false", "true"))
    print("B: losses without / with CUDA graphs:", [round(x, 4) for x in a[::6]], [round(x, 4) for x in b[::6]])
    print("B: largest difference over", min(len(a), len(b)), "steps:", max(abs(x - y) for x, y in zip(a, b)))
except Exception as e:
    print("B: loss check incomplete:", e)
PY
  echo "[B/loss done at $((SECONDS-T0)) s]"
  STEPS=5 WARMUP=2 row B dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 90 ""
  STEPS=5 WARMUP=2 row B tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 90 ""
  STEPS=5 WARMUP=2 row B tp2-cg qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 "--train.cudagraphs=true"
  STEPS=5 WARMUP=2 row B tp2-bf16 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 90 "--model.dtype=bfloat16"
  STEPS=5 WARMUP=2 row B tp2-bf16-cg qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 "--model.dtype=bfloat16 --train.cudagraphs=true"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
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
