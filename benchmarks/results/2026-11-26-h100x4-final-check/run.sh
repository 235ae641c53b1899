#!/usr/bin/env bash
# Device call 27 (4 GPUs of one host): eager TP training on GPUs, main f548f98 (cached compute copies) against
# cf4f96f (.carry/pre/src, casting on every read): `shardwise train` tp=2, no FSDP, bf16 compute on fp32 master
# weights, eager, full AC, 40 steps of the default data; the losses and grad norms of every step must be identical.
# Stream A (GPUs 0,1): tiny-qwen2 (tied embeddings); stream B (GPUs 2,3): README's `shardwise train`, no arguments.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
W=/tmp/w27; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
train() {  # GPUS PRESET SRC NAME
  CUDA_VISIBLE_DEVICES=$1 PYTHONPATH=/tmp/site:$3 timeout 150 python3 -m shardwise.cli train --model.preset=$2 \
    --parallel.tp=2 --parallel.dp_shard=1 --train.compile=false --train.activation_checkpointing=full \
    --train.steps=40 --train.eval_every=0 --train.micro_batch_size=1 --output.dir=$W/$4 --output.progress=false \
    > $W/$4.log 2>&1 || tail -20 $W/$4.log
}
stream() {  # GPUS PRESET
  train $1 $2 $PWD/.carry/pre/src $2-pre; train $1 $2 $PWD/src $2-main
}
stream 0,1 tiny-qwen2 &
(CUDA_VISIBLE_DEVICES=2,3 PYTHONPATH=/tmp/site:$PWD/src timeout 200 python3 -m shardwise.cli train > $W/default-train.log 2>&1; echo "default train exit $?"; tail -3 $W/default-train.log) &
wait
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
report = {}
for preset in ("tiny-qwen2",):
    runs = {v: [json.loads(l) for l in open(w / f"{preset}-{v}" / "metrics.jsonl")] for v in ("pre", "main")}
    pairs = list(zip(runs["pre"], runs["main"]))
    same = all(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in pairs)
    report[preset] = {"steps": len(pairs), "identical": same, "loss_pre": [a["loss"] for a, _ in pairs],
                      "loss_main": [b["loss"] for _, b in pairs],
                      "tokens_per_s": {v: runs[v][-1]["tokens_per_s"] for v in runs}}
    print(preset, len(pairs), "steps, losses and grad norms identical:", same,
          "final", pairs[-1][0]["loss"], pairs[-1][1]["loss"])
(out / "losses.json").write_text(json.dumps(report, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-4000:]}" for p in sorted(w.glob("*.log"))))
PY
