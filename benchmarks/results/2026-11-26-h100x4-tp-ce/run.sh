#!/usr/bin/env bash
# Device call 40 (4 GPUs of one host; rows of one stream are comparable). Qwen2-1.5B shapes, seq 4096, GB 8, fp32
# master weights, compiled, no AC, micro-batch 4, tp=2, branch wip/tp-reorder + SHARDWISE_TP_CE=1: the TP all-gathers
# and reduce-scatters through symmetric memory's copy engines (torch.ops.symm_mem._low_contention_*), which take no
# SMs from the matmuls that parallel.tp_overlap=reorder runs them beside. Then tiny-qwen2 trained 30 steps at tp=2,
# compiled, with NCCL and with copy engines: the losses side by side.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w40; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
Q="qwen2-1.5b 4096 2 8 sw-none-compile-mb4 130"
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=8
  row A a-none $Q "--parallel.tp_overlap=none"
  SHARDWISE_TP_CE=1 row A a-reorder-ce $Q "--parallel.tp_overlap=reorder"
  SHARDWISE_TP_CE=1 row A a-none-ce $Q "--parallel.tp_overlap=none"
  row A a-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 130 ""
}
train() {  # NAME CE
  SHARDWISE_TP_CE=$2 PYTHONPATH=/tmp/site:$PWD/src timeout 150 python3 -m shardwise.cli train --model.preset=tiny-qwen2 \
    --parallel.tp=2 --parallel.dp_shard=1 --train.steps=30 --train.eval_every=0 --train.micro_batch_size=4 \
    --train.compile=true --parallel.tp_overlap=reorder --output.dir=$W/train-$1 --output.progress=false \
    > $W/train-$1.log 2>&1 || tail -20 $W/train-$1.log
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3 WARMUP=2 STEPS=8 PROFILE=true
  SHARDWISE_TP_CE=1 row B b-reorder-ce $Q "--parallel.tp_overlap=reorder"
  row B b-none $Q "--parallel.tp_overlap=none"
  train nccl 0; train ce 1
  python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = sys.argv[1:]
runs = {v: [json.loads(l) for l in open(f"{w}/train-{v}/metrics.jsonl")] for v in ("nccl", "ce")}
for a, b in zip(runs["nccl"], runs["ce"]):
    if a["step"] % 5 == 0 or a["step"] == 1:
        print(f"step {a['step']:3d} loss nccl {a['loss']:.6f} ce {b['loss']:.6f}  grad_norm {a['grad_norm']:.5f} {b['grad_norm']:.5f}")
pathlib.Path(out, "train-losses.json").write_text(json.dumps({v: [(r["loss"], r["grad_norm"]) for r in rs] for v, rs in runs.items()}))
PY
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
for v in reorder-ce none; do cp $W/b-$v/sw-none-compile-mb4/profile-ops.txt $OUT/profile-ops-tp2-$v.txt 2>/dev/null; done
summarize $OUT
