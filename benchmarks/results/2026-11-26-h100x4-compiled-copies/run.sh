#!/usr/bin/env bash
# Device call 35 (4 GPUs of one host): compiled blocks read compute copies made before the forward (plain bf16
# tensors) instead of casting fp32 DTensor parameters inside their graphs. "old" = main before it (57d4daa, in
# .carry/old). Rows of one stream are comparable.
# A (GPUs 0,1): Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master, compiled, no AC, micro-batch 4: dp_shard=2, tp=2 new,
#   tp=2 old, tp=2 new without NCCL's flight recorder (TORCH_FR_BUFFER_SIZE=0), tp=2 new profiled.
# B (GPUs 2,3): `shardwise train` tiny-qwen2 compiled tp=2 40 steps (held-out loss every 10) old and new: identical
#   losses and grad norms expected; Llama-3-8B shapes bf16 tp=2 no AC micro-batch 2, new and old.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w35; rm -rf $W /tmp/t35; mkdir -p $W /tmp/t35; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
git log --oneline -1 2>/dev/null
OLD=$PWD/.carry/old
train() {  # NAME SRC
  PYTHONPATH=/tmp/site:$2 timeout 200 python3 -m shardwise.cli train --model.preset=tiny-qwen2 \
    --parallel.tp=2 --parallel.dp_shard=1 --train.steps=40 --train.eval_every=10 --train.micro_batch_size=4 \
    --output.dir=/tmp/t35/$1 --output.progress=false > /tmp/t35/$1.log 2>&1 || tail -30 /tmp/t35/$1.log
  echo "train $1 done at $((SECONDS - T0)) s"
}
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
  row A dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 ""
  row A tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
  ROOT=$OLD row A tp2-old qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
  TORCH_FR_BUFFER_SIZE=0 row A tp2-nofr qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
  PROFILE=true row A tp2-prof qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3
  train old $OLD/src; train new $PWD/src
  WARMUP=1 STEPS=3 row B tp2-8b llama3-8b 4096 2 8 sw-none-compile-mb2 170 "--model.dtype=bfloat16"
  WARMUP=1 STEPS=3 ROOT=$OLD row B tp2-8b-old llama3-8b 4096 2 8 sw-none-compile-mb2 170 "--model.dtype=bfloat16"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
mkdir -p $OUT/prof; cp $W/tp2-prof/*/profile-ops.txt $OUT/prof/ 2>/dev/null
python3 - $OUT <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
try:
    ra, rb = ([json.loads(l) for l in open(f"/tmp/t35/{v}/metrics.jsonl")] for v in ("old", "new"))
    same = len(ra) == len(rb) == 40 and all(x["loss"] == y["loss"] and x["grad_norm"] == y["grad_norm"] and x["val_loss"] == y["val_loss"] for x, y in zip(ra, rb))
    diff = max(abs(x["loss"] - y["loss"]) for x, y in zip(ra, rb))
    print(f"tiny-qwen2 compiled tp=2: {len(ra)} steps, old and new identical: {same}, max loss diff {diff:.3g}, final {ra[-1]['loss']:.6f} {rb[-1]['loss']:.6f}")
    (out / "losses.json").write_text(json.dumps({"identical": same, "max_loss_diff": diff, "old": [x["loss"] for x in ra], "new": [y["loss"] for y in rb]}, indent=1))
except OSError as e:
    print("missing", e)
(out / "train-logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-3000:]}" for p in sorted(pathlib.Path("/tmp/t35").glob("*.log"))))
PY
summarize $OUT
