#!/usr/bin/env bash
# Device call 93 (2 GPUs), session 22, main a7df029: async TP's numerics and the quick start with it. (1) the GPU
# smoke's parity job (Qwen2-0.5B shapes from a bf16 HF folder, 50 bf16 steps, seq 1024, GB 8, lr 1e-3, packed stdlib
# rows): 1 GPU eager (the smoke's reference) against tp=2 compiled without and with async TP; (2) README's GPU quick
# start (`shardwise train`, tp=2) without and with --parallel.async_tp=true: time, throughput, losses.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w93; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 benchmarks/smoke_checks.py prepare $W > $W/prepare.log 2>&1 || tail -3 $W/prepare.log
P=(--model.path=$W/parity-model --train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10
   --data.max_bytes=1000000 --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0
   --train.activation_checkpointing=none --parallel.dp_shard=1)
run() {  # NAME GPUS ARGS...
  local name=$1 gpus=$2 s=$SECONDS; shift 2
  (cd $W && CUDA_VISIBLE_DEVICES=$gpus timeout 200 python3 -m shardwise.cli train --output.dir=$W/$name \
     --output.progress=false "$@" > $W/$name.log 2>&1)
  echo "$name: exit $? in $((SECONDS - s)) s"; grep -a "done:\|rror" $W/$name.log | head -3 | cut -c1-220
  rm -rf $W/$name/checkpoints; mkdir -p $OUT/$name; cp $W/$name.log $OUT/$name/train.log
  cp $W/$name/metrics.jsonl $W/$name/run.json $OUT/$name/ 2>/dev/null
}
run parity-1 0 "${P[@]}" --parallel.tp=1 --train.compile=false
run parity-tp2-compiled 0,1 "${P[@]}" --parallel.tp=2 --train.compile=true
run parity-tp2-async 0,1 "${P[@]}" --parallel.tp=2 --train.compile=true --parallel.async_tp=true
run default 0,1
run default-async 0,1 --parallel.async_tp=true
python3 - $OUT <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def losses(name):
    p = out / name / "metrics.jsonl"
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []
ref = losses("parity-1")
for name in ("parity-tp2-compiled", "parity-tp2-async"):
    r = losses(name)
    if not (ref and len(r) == len(ref)):
        print(f"{name}: {len(r)} steps against {len(ref)}"); continue
    gaps = [abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(r, ref)]
    print(f"{name} vs parity-1: max rel gap {max(gaps):.2e}, mean {sum(gaps)/len(gaps):.2e}, last {r[-1]['loss']:.4f} / {ref[-1]['loss']:.4f}")
a, b = losses("parity-tp2-async"), losses("parity-tp2-compiled")
if a and len(a) == len(b):
    print(f"async vs plain tp=2: max rel gap {max(abs(x['loss']-y['loss'])/abs(y['loss']) for x, y in zip(a, b)):.2e}")
for name in ("default", "default-async"):
    r = losses(name)
    if r:
        mid = sorted(x["tokens_per_s_per_device"] for x in r[50:])
        print(f"{name}: loss {r[0]['loss']:.3f} -> {r[-1]['loss']:.4f}, steps {len(r)}, median tok/s/dev steps 51+ {mid[len(mid)//2]:,.0f}")
PY
cp .carry/run93.sh $OUT/run.sh
