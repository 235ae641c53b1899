#!/usr/bin/env bash
# Device call 112 (4 GPUs, two 2-GPU streams side by side), session 27: which forward all-gathers inductor's async-TP
# pass pipelines, and what that is worth. "new" = the working tree (the MLP's gathered tokens as (tokens, hidden),
# attention's as (batch, seq, hidden), each straight from the all-gather); "old" = 0799979 (.carry/tree-old: both
# viewed after the all-gather, neither pipelined), each row run from its own tree's root (gpu_sweep.sh puts
# $PWD/src first on PYTHONPATH: calls 109 and 111 ran their "main" rows on the working tree). Stream A: Llama-3-8B
# shapes, bf16 weights, micro-batch 2; stream B: Qwen2-1.5B shapes, fp32 master weights, micro-batch 8; both tp=2, no
# checkpointing, seq 4096, GB 8, compiled. Then 30 fp32 steps of tiny-llama at tp=2, seq 1024, micro-batch 2,
# compiled, plain (GPUs 0,1) against async TP (2,3), every step's loss compared; the async run logs each fusion the
# pass makes (.carry/xasync/sitecustomize.py, X_ASYNC_MIN=1: every candidate fused, as without it).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) NEW=$PWD OLD=$PWD/.carry/tree-old
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=470
row() {  # STREAM GPUS PRESET ROW TREE MODE EXTRA
  local s=$1 gpus=$2 preset=$3 name=$4 tree=$5 mode=$6 extra=$7 root=$NEW t=120
  [ "$mode" = async ] && extra+=" --parallel.async_tp=true"
  [ "$tree" = old ] && root=$OLD
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$s $tree $mode: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  (cd $root && CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=/tmp/site TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$s-$tree-$mode \
    OUT=$OUT/$s-$tree-$mode TP=2 GB=8 WARMUP=2 STEPS=4 EXTRA="$extra" timeout -k 5 $t \
    bash benchmarks/gpu_sweep.sh $preset 4096 $name > $OUT/$s-$tree-$mode.txt 2>&1)
  echo "$s $tree $mode: $(tail -n 1 $OUT/$s-$tree-$mode.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
( for m in "old async" "new async" "old plain" "new plain"; do row A 0,1 llama3-8b sw-none-compile-mb2 $m --model.dtype=bfloat16; done ) &
( for m in "new async" "old async" "new plain" "old plain"; do row B 2,3 qwen2-1.5b sw-none-compile-mb8 $m ""; done ) &
wait
parity() {  # GPUS MODE
  local gpus=$1 mode=$2 extra=
  [ "$mode" = async ] && extra=--parallel.async_tp=true
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$NEW/src:/tmp/site:$NEW/.carry/xasync X_ASYNC_MIN=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ic-par-$mode \
    timeout 100 torchrun --standalone --nproc-per-node=2 -m shardwise.cli train --model.preset=tiny-llama \
    --train.seq_len=1024 --train.micro_batch_size=2 --train.global_batch_size=8 --train.steps=30 --parallel.tp=2 \
    --train.dtype=float32 --train.eval_every=0 --output.dir=/tmp/par-$mode --output.progress=false $extra \
    > $OUT/parity-$mode.log 2>&1
  echo "parity $mode exit $? [at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
parity 0,1 plain & parity 2,3 async & wait
python3 - /tmp/par-plain /tmp/par-async <<'PY' | tee -a $OUT/rows.txt
import json, pathlib, sys
def losses(d):
    rows = [json.loads(l) for l in (pathlib.Path(d) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}
a, b = (losses(d) for d in sys.argv[1:])
gaps = [abs(a[s] - b[s]) / abs(a[s]) for s in sorted(a) if s in b]
print(f"parity: steps compared {len(gaps)}; largest relative gap {max(gaps):.2e}, mean {sum(gaps) / len(gaps):.2e}; "
      f"final {a[max(a)]:.6f} (plain) / {b[max(b)]:.6f} (async)")
PY
grep "x-async" $OUT/parity-async.log | sort | uniq -c | tee -a $OUT/rows.txt
cp .carry/run112.sh $OUT/run.sh
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */) parity-plain.log parity-async.log 2>/dev/null
echo "=== rows"; cat $OUT/rows.txt
