#!/usr/bin/env bash
# Device call 48 (2 GPUs; rows of one stream are comparable): the step without host reads (working tree, "new")
# against main 3110d64 ("base", .carry/base): Qwen2-1.5B rows interleaved (seq 4096, GB 8, fp32 master weights,
# compiled, no AC); eager tiny-qwen2 tp=2 30 steps both trees (losses and gradient norms compared); fused AdamW's
# on-device skip of non-finite steps on GPUs (tests/_optim_worker.py, checked by tests/test_optim.check_skips).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w48; rm -rf $W; mkdir -p $W; END=${END:-560}
BASE=$PWD/.carry/base
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
# correctness first (cheap)
for L in tp2:'"parallel.tp": 2, "parallel.dp_shard": 1' dp2:'"parallel.tp": 1, "parallel.dp_shard": 2'; do
  name=${L%%:*}; lay=${L#*:}
  PYTHONPATH=$PWD/src:$PWD/tests:/tmp/site timeout 120 torchrun --standalone --nproc-per-node=2 tests/_optim_worker.py \
    --overrides "{\"model.preset\": \"tiny-qwen2\", $lay, \"train.seq_len\": 32, \"train.global_batch_size\": 4, \"train.micro_batch_size\": 2, \"train.dtype\": \"float32\", \"train.compile\": \"false\", \"output.progress\": false}" \
    --out $W/optim-$name.pt > $W/optim-$name.log 2>&1 || tail -20 $W/optim-$name.log
  PYTHONPATH=$PWD/src:$PWD/tests:/tmp/site python3 -c "import sys, torch; from test_optim import check_skips; check_skips(torch.load('$W/optim-$name.pt')); print('fused AdamW skip on GPU, $name: ok')" 2>&1 | tail -3
done
for tree in new base; do
  root=$PWD; [ $tree = base ] && root=$BASE
  (cd $root && PYTHONPATH=$root/src:/tmp/site timeout 150 python3 -m shardwise.cli train --train.steps=30 --train.compile=false \
    --output.progress=false --output.dir=$W/eager-$tree > $W/eager-$tree.log 2>&1) || tail -5 $W/eager-$tree.log
done
python3 - $W <<'PY' | tee $OUT/eager.txt
import json, sys, pathlib
w = pathlib.Path(sys.argv[1])
rows = {t: [json.loads(l) for l in (w / f"eager-{t}" / "metrics.jsonl").read_text().splitlines()] for t in ("new", "base")}
same = all(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in zip(rows["new"], rows["base"], strict=True))
print(f"eager tiny-qwen2 tp=2, {len(rows['new'])} steps: losses and grad norms identical: {same}; last loss new {rows['new'][-1]['loss']:.6f} base {rows['base'][-1]['loss']:.6f}")
print("median tok/s new", sorted(r["tokens_per_s"] for r in rows["new"])[15], "base", sorted(r["tokens_per_s"] for r in rows["base"])[15])
PY
row a new-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 90 ""
ROOT=$BASE row a base-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 90 ""
row a new-tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 95 "--parallel.async_tp=true"
ROOT=$BASE row a base-tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 95 "--parallel.async_tp=true"
PROFILE=true row a p-new-tp2-mb8-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 "--parallel.async_tp=true"
row a new-tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 90 ""
PROFILE=true row a p-new-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
for d in p-new-tp2-mb8-async p-new-dp2; do
  for k in $W/$d/*/profile-kernels.txt; do echo "==== $d"; cat $k; done >> $OUT/kernels.txt
  for t in $W/$d/*/trace-rank0.json; do gzip -c $t > $OUT/trace-$d.json.gz; done
done
cp .carry/run48.sh $OUT/run.sh
summarize $OUT
