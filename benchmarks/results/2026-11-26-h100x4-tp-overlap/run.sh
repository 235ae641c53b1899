#!/usr/bin/env bash
# Device call 34 (4 GPUs of one host): parallel.tp_overlap (two micro-batches in flight, each on its own stream and
# its own copy of the TP group). Rows of one stream are comparable.
# A (GPUs 0,1): Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master, compiled, no AC: dp_shard=2 mb4, tp=2 mb4,
#   tp=2 mb2 + overlap (two micro-batches of 2 in flight: memory of mb4), tp=2 mb4 + overlap, tp=2 mb2 + overlap profiled.
# B (GPUs 2,3): `shardwise train` tiny-qwen2 compiled tp=2 40 steps (8 micro-batches a step, held-out loss every 10)
#   without and with overlap: identical losses and grad norms expected; the same eager; then Llama-3-8B shapes bf16
#   tp=2 no AC: mb1 + overlap (memory of mb2) against mb2.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w34; rm -rf $W /tmp/t34; mkdir -p $W /tmp/t34; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
git log --oneline -1 2>/dev/null
train() {  # NAME EXTRA...
  local name=$1; shift
  PYTHONPATH=/tmp/site:$PWD/src timeout 200 python3 -m shardwise.cli train --model.preset=tiny-qwen2 \
    --parallel.tp=2 --parallel.dp_shard=1 --train.steps=40 --train.eval_every=10 --train.micro_batch_size=2 \
    --output.dir=/tmp/t34/$name --output.progress=false "$@" > /tmp/t34/$name.log 2>&1 || tail -30 /tmp/t34/$name.log
  echo "train $name done at $((SECONDS - T0)) s"
}
OV="--parallel.tp_overlap=true"
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
  row A dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 ""
  row A tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
  row A tp2-ov-mb2 qwen2-1.5b 4096 2 8 sw-none-compile-mb2 130 "$OV"
  row A tp2-ov-mb4 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 130 "$OV"
  PROFILE=true row A tp2-ov-mb2-prof qwen2-1.5b 4096 2 8 sw-none-compile-mb2 130 "$OV"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3
  train compiled; train compiled-ov $OV; train eager --train.compile=false; train eager-ov --train.compile=false $OV
  WARMUP=1 STEPS=3 row B tp2-8b-ov-mb1 llama3-8b 4096 2 8 sw-none-compile 170 "--model.dtype=bfloat16 $OV"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
mkdir -p $OUT/prof; cp $W/tp2-ov-mb2-prof/*/profile-ops.txt $OUT/prof/ 2>/dev/null
python3 - $OUT <<'PY'
import json, pathlib, sys
out, report = pathlib.Path(sys.argv[1]), {}
for a, b in (("compiled", "compiled-ov"), ("eager", "eager-ov")):
    try:
        ra, rb = ([json.loads(l) for l in open(f"/tmp/t34/{v}/metrics.jsonl")] for v in (a, b))
    except OSError as e:
        print("missing", e); continue
    same = len(ra) == len(rb) == 40 and all(x["loss"] == y["loss"] and x["grad_norm"] == y["grad_norm"] and x["val_loss"] == y["val_loss"] for x, y in zip(ra, rb))
    diff = max(abs(x["loss"] - y["loss"]) for x, y in zip(ra, rb))
    report[a] = {"steps": len(ra), "identical": same, "max_loss_diff": diff, "loss": [x["loss"] for x in ra],
                 "loss_overlap": [y["loss"] for y in rb], "tokens_per_s": [ra[-1]["tokens_per_s"], rb[-1]["tokens_per_s"]]}
    print(f"tiny-qwen2 {a}: {len(ra)} steps, losses/grad norms/val identical with overlap: {same}, max loss diff {diff:.3g}, final {ra[-1]['loss']:.6f} {rb[-1]['loss']:.6f}")
(out / "losses.json").write_text(json.dumps(report, indent=1))
(out / "train-logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-3000:]}" for p in sorted(pathlib.Path("/tmp/t34").glob("*.log"))))
PY
summarize $OUT
