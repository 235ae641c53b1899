#!/usr/bin/env bash
# Device call 136 (2 GPUs), session 33: issue 9's async-TP target (>= 1.1x the row without it) beside TorchTitan's own
# async TP on the same machine and call (never measured before: the plugin's symmetric-memory fix was CPU-checked only).
# Llama-3-8B shapes, seq 4096, GB 8, pure bf16 on both sides, compiled, no checkpointing, tp=2 micro-batch 2 (each
# trainer's default at these shapes), warmup 2, median of 4; rows interleaved plain/async. Last: the rows' table.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w136; rm -rf $W; mkdir -p $W; END=575
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, torchtitan, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
export WARMUP=2 STEPS=4 TITAN_EXTRA="--dtype bfloat16"
B="--model.dtype=bfloat16"
row a 8b-tp2 llama3-8b 4096 2 8 sw-none-compile-mb2 130 "$B"
row a 8b-tp2 llama3-8b 4096 2 8 titan-none-compile-mb2 130 ""
row a 8b-tp2 llama3-8b 4096 2 8 sw-none-compile-mb2-asynctp 130 "$B"
row a 8b-tp2 llama3-8b 4096 2 8 titan-none-compile-mb2-asynctp 130 ""
cp .carry/run136.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
python3 - $OUT/sweep.json <<'PY' | tee -a $OUT/summary.txt
import json, sys
r = {k.split("/")[-1]: v["step_time_s_median"] for k, v in json.load(open(sys.argv[1])).items()}
for who in ("sw", "titan"):
    p, a = r.get(f"{who}-none-compile-mb2"), r.get(f"{who}-none-compile-mb2-asynctp")
    if p and a: print(f"{who}: async TP {p / a:.3f}x of plain")
for kind in ("", "-asynctp"):
    s, t = r.get(f"sw-none-compile-mb2{kind}"), r.get(f"titan-none-compile-mb2{kind}")
    if s and t: print(f"shardwise{kind or ' plain'}: {t / s:.3f}x TorchTitan")
PY
