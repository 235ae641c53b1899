#!/usr/bin/env bash
# Device call 44 (2 GPUs; rows of one stream are comparable). "base" = main ae22ff1 (.carry/base); the rest = the
# working tree: the vocabulary-parallel loss's target logit picked by loss._TargetLogit (its backward compares
# column numbers instead of scattering into a zeroed fp32 copy), the plan counting 4 + 2e bytes per logit for it.
# 1) eager numerics on GPUs: `shardwise train` tiny-qwen2 tp=2, eager, full AC, 30 steps, base against the tree
#    (eager steps repeat bit for bit on GPUs, so the losses and grad norms must be identical);
# 2) Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no AC: peaks and step times of the
#    loss-parallel rows whose measured peaks bound the plan (tests/test_plan.py), and micro-batch 8 at tp=2.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w44; rm -rf $W; mkdir -p $W; END=555
source benchmarks/stream_rows.sh
export CUDA_VISIBLE_DEVICES=0,1
train() {  # SRC NAME
  PYTHONPATH=/tmp/site:$1 timeout 100 python3 -m shardwise.cli train --model.preset=tiny-qwen2 --parallel.tp=2 \
    --parallel.dp_shard=1 --train.compile=false --train.activation_checkpointing=full --train.steps=30 \
    --train.eval_every=0 --train.micro_batch_size=1 --output.dir=$W/$2 --output.progress=false > $W/$2.log 2>&1 \
    || tail -20 $W/$2.log
}
train $PWD/.carry/base/src eager-base; train $PWD/src eager-tree
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
runs = {v: [json.loads(l) for l in open(w / f"eager-{v}" / "metrics.jsonl")] for v in ("base", "tree")}
pairs = list(zip(runs["base"], runs["tree"]))
same = all(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in pairs)
report = {"steps": len(pairs), "identical": same, "loss_base": [a["loss"] for a, _ in pairs],
          "loss_tree": [b["loss"] for _, b in pairs], "grad_norm_base": [a["grad_norm"] for a, _ in pairs],
          "grad_norm_tree": [b["grad_norm"] for _, b in pairs]}
print("eager tiny-qwen2 tp=2:", len(pairs), "steps, losses and grad norms identical:", same,
      "final", pairs[-1][0]["loss"], pairs[-1][1]["loss"])
(out / "losses.json").write_text(json.dumps(report, indent=1))
PY
export WARMUP=2 STEPS=6
ROOT=$PWD/.carry/base row a tp2-base qwen2-1.5b 4096 2 8 sw-none-compile-mb4 100 ""
row a tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 100 ""
row a tp2-mb8 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 ""
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
row a tp2-nosp qwen2-1.5b 4096 2 8 sw-none-compile-mb4 100 "--parallel.sequence_parallel=false"
row a tp2-async qwen2-1.5b 4096 2 8 sw-none-compile-mb4-asynctp 110 ""
summarize $OUT
