#!/usr/bin/env bash
# Device call 115 (4 GPUs), session 28: the working tree with shardwise.fuse (matmuls sharing an operand merged by an
# inductor pass) switched by SHARDWISE_X_FUSE_BELOW (experiment knob): "off" = 0 (no pass, as main), "on" = 2048
# (the pass's default: q/k/v merged, gate/up not), "all" = 100000 (gate/up too). Two 2-GPU streams, ratios within a
# stream. Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no checkpointing: tp=2 micro-batch 8
# plain and async TP, dp_shard=2 micro-batch 4; Llama-3-8B tp=2 bf16 micro-batch 2. Numerics: tiny-qwen2 (q/k/v
# biases: addmm) at tp=2, 30 fp32 compiled steps, off against on; the async-TP pass's decisions logged in the
# async "on" row (.carry/xasync, X_ASYNC_MIN=1: every candidate fused, as without it).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) NEW=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=575
declare -A BELOW=([off]=0 [on]=2048 [all]=100000)
row() {  # STREAM GPUS PRESET ROW TP MODE FUSE EXTRA
  local s=$1 gpus=$2 preset=$3 name=$4 tp=$5 mode=$6 fuse=$7 extra=$8 t=110 path=/tmp/site
  [ "$mode" = async ] && extra+=" --parallel.async_tp=true"
  [ "$mode" = async ] && [ "$fuse" = on ] && path+=:$NEW/.carry/xasync
  local d=$s-$preset-tp$tp-$mode-$fuse
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$path X_ASYNC_MIN=1 SHARDWISE_X_FUSE_BELOW=${BELOW[$fuse]} \
    TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$s-$mode-$fuse-$tp OUT=$OUT/$d TP=$tp GB=8 WARMUP=2 STEPS=4 EXTRA="$extra" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh $preset 4096 $name > $OUT/$d.txt 2>&1
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
parity() {  # GPUS FUSE
  local gpus=$1 fuse=$2
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$NEW/src:/tmp/site SHARDWISE_X_FUSE_BELOW=${BELOW[$fuse]} \
    TORCHINDUCTOR_CACHE_DIR=/tmp/ic-par-$fuse timeout 100 torchrun --standalone --nproc-per-node=2 -m shardwise.cli \
    train --model.preset=tiny-qwen2 --train.seq_len=1024 --train.micro_batch_size=2 --train.global_batch_size=8 \
    --train.steps=30 --parallel.tp=2 --train.dtype=float32 --train.eval_every=0 --output.dir=/tmp/par-$fuse \
    --output.progress=false > $OUT/parity-$fuse.log 2>&1
  echo "parity $fuse exit $? [at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
Q=qwen2-1.5b
( row A 0,1 $Q sw-none-compile-mb8 2 plain off ""; row A 0,1 $Q sw-none-compile-mb8 2 plain on ""
  row A 0,1 $Q sw-none-compile-mb8 2 async off ""; row A 0,1 $Q sw-none-compile-mb8 2 async on ""
  row A 0,1 $Q sw-none-compile-mb8 2 plain off ""; row A 0,1 $Q sw-none-compile-mb8 2 plain on ""; parity 0,1 off ) &
( row B 2,3 $Q sw-none-compile-mb4 1 plain off ""; row B 2,3 $Q sw-none-compile-mb4 1 plain on ""
  row B 2,3 $Q sw-none-compile-mb8 2 plain all ""; row B 2,3 $Q sw-none-compile-mb4 1 plain off ""
  row B 2,3 $Q sw-none-compile-mb4 1 plain on ""; parity 2,3 on
  for f in off on; do row B 2,3 llama3-8b sw-none-compile-mb2 2 plain $f --model.dtype=bfloat16; done ) &
wait
python3 - /tmp/par-off /tmp/par-on <<'PY' | tee -a $OUT/rows.txt
import json, pathlib, sys
def losses(d):
    rows = [json.loads(l) for l in (pathlib.Path(d) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}
a, b = (losses(d) for d in sys.argv[1:])
gaps = [abs(a[s] - b[s]) / abs(a[s]) for s in sorted(a) if s in b]
print(f"parity tiny-qwen2 tp=2 fp32: steps compared {len(gaps)}; largest relative gap {max(gaps):.2e}, "
      f"mean {sum(gaps) / len(gaps):.2e}; final {a[max(a)]:.6f} (off) / {b[max(b)]:.6f} (on)")
PY
grep -rh "x-async" $OUT/A-$Q-tp2-async-on* 2>/dev/null | sort | uniq -c | tee -a $OUT/rows.txt
cp .carry/run115.sh $OUT/run.sh
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */) parity-off.log parity-on.log 2>/dev/null
echo "=== rows"; cat $OUT/rows.txt
