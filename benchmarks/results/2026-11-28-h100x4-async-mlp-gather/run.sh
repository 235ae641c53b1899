#!/usr/bin/env bash
# Device call 109 (4 GPUs, two 2-GPU streams side by side), session 26: async TP with the MLP's gathered tokens handed
# to gate/up as (tokens, hidden) (the working tree: inductor's pass now pipelines the forward MLP all-gather) against
# main 0799979's tree (.carry/src-main: a leading 1 between the all-gather and the matmuls, no forward all-gather
# pipelined). Ratios only within a stream. Then a parity pair: 30 fp32 steps of Qwen2-0.5B shapes at tp=2, compiled,
# plain against async TP (the new tree), every step's loss compared.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
row() {  # GPUS DIR PRESET ROW TREE MODE EXTRA...: one gpu_sweep row; TREE new | main; MODE plain | async
  local gpus=$1 dir=$2 preset=$3 name=$4 tree=$5 mode=$6; shift 6
  local extra="$*" src=$PWD/src
  [ "$mode" = async ] && extra+=" --parallel.async_tp=true"
  [ "$tree" = main ] && src=$PWD/.carry/src-main/src
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$src:/tmp/site TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$dir-$tree-$mode \
    OUT=$OUT/$dir-$tree-$mode TP=2 GB=8 WARMUP=2 STEPS=5 EXTRA="$extra" \
    timeout 200 bash benchmarks/gpu_sweep.sh $preset 4096 $name > $OUT/$dir-$tree-$mode.txt 2>&1
  echo "$dir $tree $mode: $(tail -n 1 $OUT/$dir-$tree-$mode.txt)" | tee -a $OUT/rows.txt
}
parity() {  # GPUS MODE: 30 fp32 steps, losses in metrics.jsonl
  local gpus=$1 mode=$2 extra=
  [ "$mode" = async ] && extra=--parallel.async_tp=true
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$PWD/src:/tmp/site TORCHINDUCTOR_CACHE_DIR=/tmp/ic-par-$mode timeout 200 \
    python3 -m shardwise.cli train --model.preset=qwen2-0.5b --train.seq_len=1024 --train.steps=30 --parallel.tp=2 \
    --train.dtype=float32 --train.eval_every=0 --output.dir=/tmp/par-$mode --output.progress=false $extra \
    > $OUT/parity-$mode.log 2>&1
  echo "parity $mode exit $?" | tee -a $OUT/rows.txt
}
( for m in "main plain" "new plain" "new async" "main async"; do row 0,1 q15 qwen2-1.5b sw-none-compile-mb8 $m; done ) &
( for m in "new plain" "new async" "main async"; do row 2,3 l8b llama3-8b sw-none-compile-mb2 $m --model.dtype=bfloat16; done
  parity 2,3 plain; parity 2,3 async ) &
wait
cp .carry/run109.sh $OUT/run.sh
python3 - /tmp/par-plain /tmp/par-async <<'PY' | tee $OUT/parity.txt
import json, pathlib, sys
def losses(d):
    rows = [json.loads(l) for l in (pathlib.Path(d) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}
a, b = (losses(d) for d in sys.argv[1:])
gaps = [abs(a[s] - b[s]) / abs(a[s]) for s in sorted(a) if s in b]
print(f"steps compared {len(gaps)}; largest relative gap {max(gaps):.2e}, mean {sum(gaps) / len(gaps):.2e}; "
      f"final {a[max(a)]:.6f} (plain) / {b[max(b)]:.6f} (async)")
PY
echo "=== rows (name step_s tok/s/dev MFU GiB)"; cat $OUT/rows.txt
