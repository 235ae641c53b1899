#!/usr/bin/env bash
# Device call 127 (2 GPUs), session 31: every Qwen2-1.5B row of issue 9's table on main 162c45b (the merge pass, the
# collector schedule) in one call: compiled dp_shard=2 micro-batch 4, tp=2 micro-batch 8 plain and with async TP
# (warmup 3, 12 timed steps); eager tp=2 with full checkpointing at micro-batch 1, replayed as CUDA graphs and not,
# beside the design note's recipe and transformers' tp_plan at those settings (warmup 2, 4 timed steps). Seq 4096,
# GB 8; shardwise and the recipe with fp32 master weights, transformers with bf16 weights. Last: the rows' table.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  .whl-titan/accelerate-*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w127; rm -rf $W; mkdir -p $W; END=565
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers, accelerate; print(torch.__version__, transformers.__version__, accelerate.__version__, torch.cuda.nccl.version())'
export WARMUP=3 STEPS=12
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 115 ""
row a tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 115 ""
row a tp2-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8 115 "--parallel.async_tp=true"
export WARMUP=2 STEPS=4
row a eager qwen2-1.5b 4096 2 8 sw-full-eager-graphs 60 ""
row a eager qwen2-1.5b 4096 2 8 sw-full-eager 60 ""
row a eager qwen2-1.5b 4096 2 8 hf-tp-plan-ac 70 ""
row a eager qwen2-1.5b 4096 2 8 recipe-eager 70 ""
cp .carry/run127.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
