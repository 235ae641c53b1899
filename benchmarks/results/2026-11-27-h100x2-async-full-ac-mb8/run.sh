#!/usr/bin/env bash
# Device call 96 (2 GPUs), session 23, main abff231: call 95 found Llama-3-8B tp=2 (fp32 master weights, full
# checkpointing, micro-batch 1) host-bound, plain (79% GPU busy) and more so with async TP (55%). At the micro-batch
# shardwise plan recommends on 80 GiB (8: one micro-batch per step), plain against async TP, profiled, and the
# micro-batch 1 plain row profiled again for its host ops table. seq 4096, GB 8, compiled, warmup 2, median of 3.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site WARMUP=2 STEPS=3
W=/tmp/w96; rm -rf $W; mkdir -p $W; END=${END:-565}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
A=--parallel.async_tp=true
PROFILE=true row c mb8-plain llama3-8b 4096 2 8 sw-full-compile-mb8 140 ""
PROFILE=true row c mb8-async llama3-8b 4096 2 8 sw-full-compile-mb8 140 "$A"
PROFILE=true row c mb1-plain llama3-8b 4096 2 8 sw-full-compile 130 ""
row c mb8-async2 llama3-8b 4096 2 8 sw-full-compile-mb8 130 "$A"
for d in mb8-plain mb8-async mb1-plain; do
  echo "==== $d profile"; grep -h -A5 "profiled step" $W/$d/*.log | head -6
  t=$(find $W/$d -name 'trace-rank0.json*' | head -1); [ -n "$t" ] && PYTHONPATH=src:/tmp/site python3 benchmarks/trace_gaps.py --largest 4 $t 2>&1 | head -12
  fs="profile-kernels.txt profile-ops.txt"; [ $d = mb1-plain ] && fs=profile-ops.txt  # 8 files come back at most
  mkdir -p $OUT/$d; for f in $fs; do k=$(find $W/$d -name $f | head -1); [ -n "$k" ] && cp $k $OUT/$d/; done
done
head -30 $OUT/mb1-plain/profile-ops.txt
cp .carry/run96.sh $OUT/run.sh
summarize $OUT
