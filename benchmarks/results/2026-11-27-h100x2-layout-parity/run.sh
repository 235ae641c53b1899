#!/usr/bin/env bash
# Device call 66 (2 GPUs): layout parity of real training at call 65's shapes, step by step. `shardwise train` with its
# defaults (bf16 compute, compiled) at Qwen2-0.5B shapes, seq 1024, lr 3e-3 (the default): tp=2 against dp_shard=2, 60
# steps; then the same in fp32 compute (`--train.dtype=float32`), 30 steps. Every step's loss and gradient norm kept.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site CUDA_VISIBLE_DEVICES=0,1
W=/tmp/w66; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
train() {  # NAME TIMEOUT ARGS...
  local name=$1 t=$2; shift 2; local t0=$SECONDS
  timeout $t python3 -m shardwise.cli train --model.preset=qwen2-0.5b --train.seq_len=1024 --output.progress=false \
    --output.dir=$W/$name "$@" > $W/$name.log 2>&1
  echo "$name: exit $? in $((SECONDS - t0)) s"; grep -h "Error" $W/$name.log | head -3
  mkdir -p $OUT/$name; cp $W/$name/metrics.jsonl $W/$name/run.json $OUT/$name/ 2>/dev/null
}
train bf16-tp2 150 --train.steps=60 --parallel.tp=2
train bf16-dp2 150 --train.steps=60 --parallel.tp=1
train fp32-tp2 150 --train.steps=30 --parallel.tp=2 --train.dtype=float32
train fp32-dp2 150 --train.steps=30 --parallel.tp=1 --train.dtype=float32
python3 - $OUT <<'PY' | tee $OUT/parity.txt
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def rows(name):
    f = out / name / "metrics.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines() if '"loss"' in l] if f.exists() else []
for dt in ("bf16", "fp32"):
    a, b = rows(f"{dt}-tp2"), rows(f"{dt}-dp2")
    if not a or not b:
        print(dt, "missing"); continue
    gaps = [abs(x["loss"] - y["loss"]) / y["loss"] for x, y in zip(a, b)]
    ngaps = [abs(x["grad_norm"] - y["grad_norm"]) / y["grad_norm"] for x, y in zip(a, b)]
    print(f"{dt}: {len(gaps)} steps; relative loss gap tp=2 vs dp_shard=2 by step:")
    for s in (1, 2, 5, 10, 20, 30, 40, 50, 60):
        if s <= len(gaps):
            print(f"  step {s:3}: loss {a[s-1]['loss']:.5f} / {b[s-1]['loss']:.5f}  gap {gaps[s-1]:.2e}  grad-norm gap {ngaps[s-1]:.2e}")
    print(f"  largest loss gap {max(gaps):.2e} (step {gaps.index(max(gaps)) + 1}); median tokens/s/device "
          f"{sorted(r['tokens_per_s_per_device'] for r in a[len(a)//2:])[len(a)//4]:,.0f} / "
          f"{sorted(r['tokens_per_s_per_device'] for r in b[len(b)//2:])[len(b)//4]:,.0f}")
PY
cp .carry/run66.sh $OUT/run.sh
