#!/usr/bin/env bash
# Device call 63 (2 GPUs): the review mend (main becd505: warn_memory reads the launcher's one plan) through the
# launcher on GPUs — shardwise train at dp_shard=2 (one note, exit 0).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
timeout 150 python3 -m shardwise.cli train --parallel.tp=1 --train.steps=20 --train.compile=false --output.progress=false \
  --output.dir=/tmp/w63 > $OUT/train.log 2>&1; echo "shardwise train dp_shard=2: exit $? in $((SECONDS - t0)) s"
grep -h "shardwise: note\|Error" $OUT/train.log | head -5; grep '"loss"' /tmp/w63/metrics.jsonl | tail -1 | cut -c1-120
cp .carry/run63.sh $OUT/run.sh
