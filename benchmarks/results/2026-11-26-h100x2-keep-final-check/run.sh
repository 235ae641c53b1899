#!/usr/bin/env bash
# Device call 62 (2 GPUs): the committed rule (main 12d6882: units kept between micro-batches only with blocks kept
# gathered) on GPUs — tiny-qwen2 dp_shard=2 eager, 4 micro-batches per rank, 30 steps (call 58's command; its new and
# base runs both ended at loss 3.294284), and Llama-3-8B dp_shard=2 (pure bf16, compiled, no AC, micro-batch 1, GB 8).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w62; rm -rf $W; mkdir -p $W; END=${END:-300}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1
PYTHONPATH=$PWD/src:/tmp/site timeout 150 python3 -m shardwise.cli train --parallel.tp=1 --train.steps=30 \
  --train.compile=false --train.global_batch_size=8 --train.micro_batch_size=1 --output.progress=false \
  --output.dir=$W/train > $W/train.log 2>&1; echo "train exit $?"
grep -h "shardwise: note" $W/train.log; grep '"loss"' $W/train/metrics.jsonl | tail -1 | tee $OUT/train.txt
export WARMUP=2 STEPS=3
row a 8b-dp2 llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16"
cp .carry/run62.sh $OUT/run.sh
summarize $OUT
