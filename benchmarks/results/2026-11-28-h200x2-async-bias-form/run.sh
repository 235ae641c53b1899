#!/usr/bin/env bash
# Device call 119 (2 GPUs), session 29: biased merged projections (Qwen2's q/k/v) read as reshape -> mm -> reshape with
# the biases added after (main's working tree, "new") against call 118's form (one addmm: "old", .carry/xold with
# X_OLDBIAS=1), which inductor on GPUs turns into mm + add before the reshape, so async TP left attention's all-gather
# plain. Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no checkpointing: tp=2 micro-batch 8 plain
# and async TP, new and old; dp_shard=2 micro-batch 4. The async-TP pass's decisions and leftover patterns logged
# (X_ASYNC_MIN=1: every candidate fused, as without it; X_DUMP=1); "asyncall": async TP decomposing also the
# collectives inductor leaves to simple overlap (X_ALLEXPOSED=1: the backward's merged input-gradient RS). Numerics: tiny-qwen2 tp=2, 30 fp32 compiled steps,
# async TP (new) against plain, and again in bf16 (where the biases' separate add rounds q/k/v once more).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) NEW=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=580
row() {  # NAME PRESET ROW TP MODE FORM
  local n=$1 preset=$2 name=$3 tp=$4 mode=$5 form=$6 extra="" t=110 old= all=
  [ "$mode" != plain ] && extra+=" --parallel.async_tp=true"
  [ "$mode" = asyncall ] && all=1
  [ "$form" = old ] && old=1
  local d=$n-tp$tp-$mode-$form
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  PYTHONPATH=/tmp/site:$NEW/.carry/xold X_OLDBIAS=$old X_ALLEXPOSED=$all X_ASYNC_MIN=1 X_DUMP=1 \
    TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$mode-$form-$tp OUT=$OUT/$d TP=$tp GB=8 WARMUP=2 STEPS=4 EXTRA="$extra" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh $preset 4096 $name > $OUT/$d.txt 2>&1
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
parity() {  # MODE DTYPE
  local mode=$1 dt=$2 extra=""
  [ "$mode" = async ] && extra=--parallel.async_tp=true
  [ $((SECONDS - T0 + 90)) -gt $END ] && { echo "parity $mode $dt: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  PYTHONPATH=$NEW/src:/tmp/site TORCHINDUCTOR_CACHE_DIR=/tmp/ic-par-$mode-$dt timeout 90 torchrun --standalone \
    --nproc-per-node=2 -m shardwise.cli train --model.preset=tiny-qwen2 --train.seq_len=1024 --train.micro_batch_size=2 \
    --train.global_batch_size=8 --train.steps=30 --parallel.tp=2 --train.dtype=$dt --train.eval_every=0 \
    --output.dir=/tmp/par-$mode-$dt --output.progress=false $extra > $OUT/parity-$mode-$dt.log 2>&1
  echo "parity $mode $dt exit $? [at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
  cp /tmp/par-$mode-$dt/metrics.jsonl $OUT/parity-$mode-$dt.jsonl 2>/dev/null
}
Q=qwen2-1.5b
row A $Q sw-none-compile-mb8 2 async new; row B $Q sw-none-compile-mb8 2 async old
row C $Q sw-none-compile-mb8 2 asyncall new; row D $Q sw-none-compile-mb8 2 plain new
row E $Q sw-none-compile-mb4 1 plain new; row F $Q sw-none-compile-mb8 2 async new
parity async float32; parity plain float32; parity async bfloat16; parity plain bfloat16
for r in A-tp2-async-new C-tp2-asyncall-new; do echo "$r:"; grep -rhE "x-async|x-dump\]   (AG|RS)" $OUT/$r* 2>/dev/null | sort | uniq -c; done | tee -a $OUT/rows.txt
cp .carry/run119.sh $OUT/run.sh; cp .carry/xold/sitecustomize.py $OUT/xold-sitecustomize.py
python3 - "$OUT" <<'PY' | tee -a $OUT/rows.txt
import json, sys
for dt in ("float32", "bfloat16"):
    try:
        l = {m: [json.loads(x)["loss"] for x in open(f"{sys.argv[1]}/parity-{m}-{dt}.jsonl")] for m in ("async", "plain")}
    except OSError as e:
        print(f"parity {dt}: {e}"); continue
    gap = max(abs(a - b) / abs(b) for a, b in zip(l["async"], l["plain"], strict=True))
    print(f"parity tiny-qwen2 tp=2 {dt} 30 steps async vs plain: largest relative loss gap {gap:.3g}, "
          f"finals {l['async'][-1]:.6f} / {l['plain'][-1]:.6f}")
PY
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */) 2>/dev/null
echo "=== rows"; cat $OUT/rows.txt
