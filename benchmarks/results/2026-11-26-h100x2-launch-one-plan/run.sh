#!/usr/bin/env bash
# Device call 56 (2 GPUs): the launcher's one plan (launch.gpu_plan) serving both resolve_reshard and warn_memory,
# working tree after the review mend. shardwise train tiny-qwen2 dp_shard=2 eager 20 steps (note: auto -> false);
# shardwise plan of Llama-3-8B dp_shard=2 fp32 mb 4 here (what the launcher's warning would say), timed.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w56; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
timeout 150 python3 -m shardwise.cli train --parallel.tp=1 --train.steps=20 --train.compile=false --output.progress=false \
  --output.dir=$W/train > $W/train.log 2>&1; echo "shardwise train dp_shard=2: exit $? in $((SECONDS - t0)) s"
grep -h "shardwise: \(note\|warning\)" $W/train.log; tail -1 $W/train/metrics.jsonl | cut -c1-80
python3 - <<'PY'
import time
from shardwise.config import load_config
from shardwise import launch
cfg = load_config(None, {"model.preset": "llama3-8b", "parallel.tp": "1", "train.seq_len": "4096", "train.global_batch_size": "8"})
t = time.perf_counter(); report = launch.gpu_plan(cfg, 2); print(f"gpu_plan llama3-8b dp_shard=2: {time.perf_counter() - t:.1f} s")
launch.resolve_reshard(cfg, 2, report=report); launch.warn_memory(cfg, 2, report)
PY
cp $W/train.log $OUT/; cp .carry/run56.sh $OUT/run.sh
