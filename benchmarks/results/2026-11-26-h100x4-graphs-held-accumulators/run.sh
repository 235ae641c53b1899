#!/usr/bin/env bash
# Device call 29 (4 GPUs of one host): train.cudagraphs (eager blocks replayed as CUDA graphs), after holding each
# leaf's gradient accumulator on the training stream. Rows of one stream are comparable.
# A (GPUs 0,1): Qwen2-1.5B shapes, seq 4096, GB 8, tp=2, fp32 master: eager full AC micro-batch 1 without and with
#   graphs, both profiled; then eager without AC, micro-batch 1, without and with graphs.
# B (GPUs 2,3): `shardwise train` tiny-qwen2 tp=2 eager full AC 40 steps without and with graphs (identical losses
#   and grad norms expected; AccumulateGrad stream warnings counted), then Llama-3-8B shapes, bf16 weights, tp=2,
#   eager, full AC, micro-batch 1, without and with graphs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w29; rm -rf $W /tmp/t29; mkdir -p $W /tmp/t29; END=540
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
train() {  # NAME EXTRA...
  local name=$1; shift
  PYTHONPATH=/tmp/site:$PWD/src timeout 150 python3 -m shardwise.cli train --model.preset=tiny-qwen2 \
    --parallel.tp=2 --parallel.dp_shard=1 --train.compile=false --train.activation_checkpointing=full \
    --train.steps=40 --train.eval_every=0 --train.micro_batch_size=2 --output.dir=/tmp/t29/$name --output.progress=false "$@" \
    > /tmp/t29/$name.log 2>&1 || tail -30 /tmp/t29/$name.log
  echo "train $name: $(grep -c "AccumulateGrad node" /tmp/t29/$name.log) AccumulateGrad stream warnings"
}
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=4
  PROFILE=true row A tp2-eager-prof qwen2-1.5b 4096 2 8 sw-full-eager 110 ""
  PROFILE=true row A tp2-graphs-prof qwen2-1.5b 4096 2 8 sw-full-eager-graphs 110 ""
  row A tp2-noac-eager qwen2-1.5b 4096 2 8 sw-none-eager 90 ""
  row A tp2-noac-graphs qwen2-1.5b 4096 2 8 sw-none-eager 90 "--train.cudagraphs=true"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3
  train eager; train graphs --train.cudagraphs=true
  WARMUP=1 STEPS=2 row B tp2-8b-eager llama3-8b 4096 2 8 sw-full-eager 150 "--model.dtype=bfloat16"
  WARMUP=1 STEPS=2 row B tp2-8b-graphs llama3-8b 4096 2 8 sw-full-eager-graphs 150 "--model.dtype=bfloat16"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
mkdir -p $OUT/prof; for d in tp2-eager-prof tp2-graphs-prof; do cp $W/$d/*/profile-ops.txt $OUT/prof/$d-ops.txt 2>/dev/null; done
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
runs = {v: [json.loads(l) for l in open(f"/tmp/t29/{v}/metrics.jsonl")] for v in ("eager", "graphs")}
pairs = list(zip(runs["eager"], runs["graphs"]))
same = all(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in pairs)
report = {"steps": len(pairs), "identical": same, "loss_eager": [a["loss"] for a, _ in pairs],
          "loss_graphs": [b["loss"] for _, b in pairs], "tokens_per_s": {v: runs[v][-1]["tokens_per_s"] for v in runs}}
print("tiny-qwen2", len(pairs), "steps, losses and grad norms identical:", same, "final", pairs[-1][0]["loss"],
      pairs[-1][1]["loss"], report["tokens_per_s"])
(out / "losses.json").write_text(json.dumps(report, indent=1))
(out / "train-logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-4000:]}" for p in sorted(pathlib.Path("/tmp/t29").glob("*.log"))))
PY
summarize $OUT
