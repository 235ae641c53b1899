#!/usr/bin/env bash
# Device call 99 (1 GPU), session 23, main 71b99cf: bench.profile's new verdict (time the GPU waited for the host) on a
# host-bound row (Qwen2-0.5B shapes, eager, micro-batch 1, seq 1024) and a GPU-bound one (the same compiled, micro-batch 8).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
B=(python3 -m shardwise.cli bench --model.preset=qwen2-0.5b --train.seq_len=1024 --train.global_batch_size=8
   --bench.warmup=2 --bench.steps=3 --bench.profile=true)
for row in "eager-mb1 --train.compile=false --train.micro_batch_size=1" "compiled-mb8 --train.compile=true --train.micro_batch_size=8"; do
  set -- $row; name=$1; shift
  timeout 110 "${B[@]}" --output.dir=/tmp/p/$name --bench.out=/tmp/p/$name.json "$@" > /tmp/p-$name.log 2>&1; echo "$name exit $?"
  grep -E "tokens/s|MFU|profiled step|GPU busy|verdict|communication" /tmp/p-$name.log | head -8
done
