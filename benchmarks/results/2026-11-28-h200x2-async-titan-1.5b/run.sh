#!/usr/bin/env bash
# Device call 137 (2 GPUs), session 33: call 136's question at issue 9's own shapes. Qwen2-1.5B sizes, seq 4096, GB 8,
# compiled, no checkpointing, tp=2 micro-batch 8 (shardwise's default there): shardwise (its defaults: fp32 master
# weights, Qwen2 itself) and TorchTitan's llama3 at the same sizes (no qkv bias, untied embeddings, pure bf16 as
# TorchTitan trains TP without FSDP), each plain and with async TP, interleaved; warmup 2, median of 10.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w137; rm -rf $W; mkdir -p $W; END=575
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, torchtitan, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
export WARMUP=2 STEPS=10
row a q-tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 130 ""
row a q-tp2 qwen2-1.5b 4096 2 8 titan-none-compile-mb8 130 ""
row a q-tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb8-asynctp 130 ""
row a q-tp2 qwen2-1.5b 4096 2 8 titan-none-compile-mb8-asynctp 130 ""
cp .carry/run137.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
python3 - $OUT/sweep.json <<'PY' | tee -a $OUT/summary.txt
import json, sys
r = {k.split("/")[-1]: v["step_time_s_median"] for k, v in json.load(open(sys.argv[1])).items()}
for who in ("sw", "titan"):
    p, a = r.get(f"{who}-none-compile-mb8"), r.get(f"{who}-none-compile-mb8-asynctp")
    if p and a: print(f"{who}: async TP {p / a:.3f}x of plain")
for kind in ("", "-asynctp"):
    s, t = r.get(f"sw-none-compile-mb8{kind}"), r.get(f"titan-none-compile-mb8{kind}")
    if s and t: print(f"shardwise{kind or ' plain'}: {t / s:.3f}x TorchTitan")
PY
