#!/usr/bin/env bash
# Device call 28 (4 GPUs of one host): train.cudagraphs (eager blocks replayed as CUDA graphs).
# Stream A (GPUs 0,1): Qwen2-1.5B shapes, seq 4096, GB 8, tp=2, eager, full AC, micro-batch 1: without and with graphs.
# Stream B (GPUs 2,3): `shardwise train` tp=2 eager full AC, 40 steps of the default data, without and with graphs:
# the losses and grad norms of every step must be identical (tiny-qwen2 tied, tiny-llama untied).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w28; rm -rf $W; mkdir -p $W $OUT/sweep
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
train() {  # PRESET NAME EXTRA...
  local preset=$1 name=$2; shift 2
  CUDA_VISIBLE_DEVICES=2,3 PYTHONPATH=/tmp/site:$PWD/src timeout 150 python3 -m shardwise.cli train --model.preset=$preset \
    --parallel.tp=2 --parallel.dp_shard=1 --train.compile=false --train.activation_checkpointing=full \
    --train.steps=40 --train.eval_every=0 --train.micro_batch_size=2 --output.dir=$W/$name --output.progress=false "$@" \
    > $W/$name.log 2>&1 || tail -30 $W/$name.log
}
(for p in tiny-qwen2 tiny-llama; do train $p $p-eager; train $p $p-graphs --train.cudagraphs=true; done) &
(CUDA_VISIBLE_DEVICES=0,1 OUT=$OUT/sweep TP=2 GB=8 WARMUP=2 STEPS=4 timeout 400 bash benchmarks/gpu_sweep.sh qwen2-1.5b 4096 \
   sw-full-eager sw-full-eager-graphs > $W/sweep.out 2>&1; tail -40 $W/sweep.out) &
wait
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
report = {}
for preset in ("tiny-qwen2", "tiny-llama"):
    try:
        runs = {v: [json.loads(l) for l in open(w / f"{preset}-{v}" / "metrics.jsonl")] for v in ("eager", "graphs")}
    except OSError as e:
        print(preset, "missing", e); continue
    pairs = list(zip(runs["eager"], runs["graphs"]))
    same = all(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in pairs)
    report[preset] = {"steps": len(pairs), "identical": same, "loss_eager": [a["loss"] for a, _ in pairs],
                      "loss_graphs": [b["loss"] for _, b in pairs],
                      "tokens_per_s": {v: runs[v][-1]["tokens_per_s"] for v in runs}}
    print(preset, len(pairs), "steps, losses and grad norms identical:", same,
          "final", pairs[-1][0]["loss"], pairs[-1][1]["loss"], report[preset]["tokens_per_s"])
(out / "losses.json").write_text(json.dumps(report, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-4000:]}" for p in sorted(w.glob("*.log"))))
PY
