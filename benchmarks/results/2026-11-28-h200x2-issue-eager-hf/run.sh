#!/usr/bin/env bash
# Device call 133 (2 GPUs), session 32: the issue's eager rows on main 67812f1 with transformers' tp_plan beside them,
# which call 127 left without a figure (its 70 s did not cover writing and loading the 1.5B folder). Qwen2-1.5B seq
# 4096, GB 8, tp=2, full checkpointing, micro-batch 1: shardwise eager (fp32 master weights), the same replayed as CUDA
# graphs (train.cudagraphs), the design note's recipe (fp32 master weights), transformers tp_plan="auto" (bf16
# weights). Warmup 2, median of 4. Last: the rows' table.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  .whl-titan/accelerate-*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w133; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers, accelerate; print(torch.__version__, transformers.__version__, accelerate.__version__, torch.cuda.nccl.version())'
export WARMUP=2 STEPS=4
row a eager qwen2-1.5b 4096 2 8 hf-tp-plan-ac 200 ""
row a eager qwen2-1.5b 4096 2 8 sw-full-eager-graphs 70 ""
row a eager qwen2-1.5b 4096 2 8 sw-full-eager 70 ""
row a eager qwen2-1.5b 4096 2 8 recipe-eager 90 ""
cp .carry/run133.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
