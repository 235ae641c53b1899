#!/usr/bin/env bash
# Device call 58 (2 GPUs, same machine as call 57): numerics of units kept gathered through the micro-batches (tiny-qwen2
# dp_shard=2, eager, 4 micro-batches per rank, 30 steps, new against base 44fd74c: losses and gradient norms compared);
# the Llama-3-8B dp_shard=2 pair again in the other order; Llama-3-8B tp=2 (pure bf16, compiled, no AC, micro-batch 2)
# beside TorchTitan on H100.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w58; rm -rf $W; mkdir -p $W; END=${END:-565}
BASE=$PWD/.carry/base
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1
for tree in new base; do
  root=$PWD; [ $tree = base ] && root=$BASE
  (cd $root && PYTHONPATH=$root/src:/tmp/site timeout 150 python3 -m shardwise.cli train --parallel.tp=1 --train.steps=30 \
    --train.compile=false --train.global_batch_size=8 --train.micro_batch_size=1 --output.progress=false \
    --output.dir=$W/train-$tree > $W/train-$tree.log 2>&1) || tail -5 $W/train-$tree.log
done
grep -h "shardwise: note" $W/train-*.log
python3 - $W <<'PY' | tee $OUT/train.txt
import json, sys, pathlib
w = pathlib.Path(sys.argv[1])
rows = {t: [json.loads(l) for l in (w / f"train-{t}" / "metrics.jsonl").read_text().splitlines() if '"loss"' in l] for t in ("new", "base")}
same = all(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in zip(rows["new"], rows["base"], strict=True))
print(f"shardwise train tiny-qwen2 dp_shard=2 eager, 4 micro-batches per rank, {len(rows['new'])} steps: losses and grad norms identical: {same}; last loss new {rows['new'][-1]['loss']:.6f} base {rows['base'][-1]['loss']:.6f}")
PY
export WARMUP=2 STEPS=3 TITAN_EXTRA="--dtype bfloat16"
ROOT=$BASE row a 8b-base llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16"
row a 8b-new llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16"
row a 8b-tp2-titan llama3-8b 4096 2 8 titan-none-compile-mb2 115 ""
row a 8b-tp2-new llama3-8b 4096 2 8 sw-none-compile-mb2 100 "--model.dtype=bfloat16"
cp .carry/run58.sh $OUT/run.sh
summarize $OUT
