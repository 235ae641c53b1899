#!/usr/bin/env bash
# Device call 71 (2 GPUs): parallel.async_tp=true without torch 2.11's FutureWarning about enable_symm_mem_for_group
# (main before the change printed it once per rank), tiny-qwen2 tp=2 compiled.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
timeout -k 5 240 python3 -m shardwise.cli bench --model.preset=tiny-qwen2 --parallel.tp=2 --parallel.async_tp=true \
  --train.seq_len=512 --train.micro_batch_size=4 --train.global_batch_size=8 --bench.warmup=2 --bench.steps=3 \
  --output.dir=/tmp/w71 > $OUT/bench.log 2>&1; echo "bench exit $?"
echo "FutureWarning lines: $(grep -c FutureWarning $OUT/bench.log)"; grep -i "warn" $OUT/bench.log | sort | uniq -c | head; tail -9 $OUT/bench.log
cp .carry/run71.sh $OUT/run.sh
