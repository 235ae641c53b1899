#!/usr/bin/env bash
# Device call 95 (2 GPUs), session 23, main 0d7fa36: why is async TP 0.83x of plain tp=2 at Llama-3-8B shapes with fp32
# master weights and full checkpointing (call 92)? Host-bound at micro-batch 1 or the checkpointed recompute? Rows:
# plain and async at micro-batch 1, each profiled (bench.profile: GPU busy, CPU in ops, exposed communication, the
# trace's idle gaps), then plain and async at micro-batch 2 (twice the GPU work per host call, same checkpointing).
# seq 4096, GB 8, compiled, warmup 2, median of 3.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site WARMUP=2 STEPS=3
W=/tmp/w95; rm -rf $W; mkdir -p $W; END=${END:-560}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
A=--parallel.async_tp=true
PROFILE=true row c 8b-full-plain llama3-8b 4096 2 8 sw-full-compile 140 ""
PROFILE=true row c 8b-full-async llama3-8b 4096 2 8 sw-full-compile 140 "$A"
row c 8b-full-async-mb2 llama3-8b 4096 2 8 sw-full-compile 130 "--train.micro_batch_size=2 $A"
row c 8b-full-plain-mb2 llama3-8b 4096 2 8 sw-full-compile 130 "--train.micro_batch_size=2"
for d in 8b-full-plain 8b-full-async; do
  echo "==== $d profile"; grep -h -A6 "profiled step" $W/$d/sw-full-compile.log | head -8
  t=$(find $W/$d -name 'trace-rank0.json*' | head -1); [ -n "$t" ] && PYTHONPATH=src:/tmp/site python3 benchmarks/trace_gaps.py --largest 6 $t 2>&1 | head -40
  k=$(find $W/$d -name 'profile-kernels.txt' | head -1); [ -n "$k" ] && { mkdir -p $OUT/$d; cp $k $OUT/$d/; head -25 $k; }
done
cp .carry/run95.sh $OUT/run.sh
summarize $OUT
