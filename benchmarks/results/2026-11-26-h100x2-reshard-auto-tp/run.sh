#!/usr/bin/env bash
# Device call 54 (2 GPUs; rows of one stream are comparable): the working tree with parallel.reshard_after_forward=auto.
# 1) shardwise train, tiny-qwen2 at dp_shard=2 (tp=1), eager, 30 steps: auto (blocks kept gathered) against =true,
#    every loss and gradient norm compared. 2) Qwen2-1.5B shapes (seq 4096, GB 8, fp32 master weights, compiled, no
#    AC): dp_shard=2 mb 4 with the default (auto) and =true, tp=2 mb 8 plain and with async TP.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w54; rm -rf $W; mkdir -p $W; END=${END:-500}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
for s in auto true; do
  PYTHONPATH=$PWD/src:/tmp/site timeout 150 python3 -m shardwise.cli train --parallel.tp=1 --train.steps=30 --train.compile=false \
    --parallel.reshard_after_forward=$s --output.progress=false --output.dir=$W/train-$s > $W/train-$s.log 2>&1 || tail -5 $W/train-$s.log
done
grep -h "reshard_after_forward" $W/train-*.log
python3 - $W <<'PY' | tee $OUT/train.txt
import json, sys, pathlib
w = pathlib.Path(sys.argv[1])
rows = {t: [json.loads(l) for l in (w / f"train-{t}" / "metrics.jsonl").read_text().splitlines()] for t in ("auto", "true")}
same = all(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in zip(rows["auto"], rows["true"], strict=True))
print(f"eager tiny-qwen2 dp_shard=2, {len(rows['auto'])} steps, kept gathered (auto) vs freed (true): losses and grad norms identical: {same}; last loss {rows['auto'][-1]['loss']:.6f} / {rows['true'][-1]['loss']:.6f}")
PY
row a dp2-auto qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
row a dp2-reshard qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 "--parallel.reshard_after_forward=true"
row a tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 85 ""
row a tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 90 "--parallel.async_tp=true"
cp .carry/run54.sh $OUT/run.sh
summarize $OUT
