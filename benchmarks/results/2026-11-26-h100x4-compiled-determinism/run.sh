#!/usr/bin/env bash
# Device call 36: is `shardwise train` compiled at tp=2 deterministic run to run? The same command (tiny-qwen2, main
# 57d4daa, compiled, tp=2, 40 steps, micro-batch 4, held-out loss every 10) twice at once, on GPUs 0,1 and 2,3.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
train() {  # NAME GPUS
  CUDA_VISIBLE_DEVICES=$2 PYTHONPATH=/tmp/site:$PWD/src timeout 200 python3 -m shardwise.cli train --model.preset=tiny-qwen2 \
    --parallel.tp=2 --parallel.dp_shard=1 --train.steps=40 --train.eval_every=10 --train.micro_batch_size=4 \
    --output.dir=/tmp/t36/$1 --output.progress=false > /tmp/t36/$1.log 2>&1 || tail -30 /tmp/t36/$1.log
}
mkdir -p /tmp/t36; train a 0,1 & train b 2,3 & wait
python3 - $OUT <<'PY'
import json, pathlib, sys
ra, rb = ([json.loads(l) for l in open(f"/tmp/t36/{v}/metrics.jsonl")] for v in "ab")
same = len(ra) == len(rb) == 40 and all(x["loss"] == y["loss"] and x["grad_norm"] == y["grad_norm"] for x, y in zip(ra, rb))
first = next((x["step"] for x, y in zip(ra, rb) if x["loss"] != y["loss"] or x["grad_norm"] != y["grad_norm"]), None)
diff = max(abs(x["loss"] - y["loss"]) for x, y in zip(ra, rb))
print(f"two identical compiled runs: identical {same}, first differing step {first}, max loss diff {diff:.3g}, final {ra[-1]['loss']:.6f} {rb[-1]['loss']:.6f}")
pathlib.Path(sys.argv[1], "losses.json").write_text(json.dumps({"identical": same, "first_differing_step": first, "max_loss_diff": diff, "a": [x["loss"] for x in ra], "b": [y["loss"] for y in rb]}, indent=1))
PY
