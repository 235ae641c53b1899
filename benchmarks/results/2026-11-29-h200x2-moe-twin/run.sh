#!/usr/bin/env bash
# Device call 168 (2 GPUs), session 39: the four mixtures of experts' gpu_archs.sh check as session 39 made it
# (smoke_checks.MOE_STEPS: fp32 eager, the first 10 steps within 1e-4, the rest reported beside a one-GPU "twin" at
# micro-batch 2, which shows how far rounding alone carries the curve), at tp=2 and dp_shard=2 on 2 GPUs; beside it
# README's `shardwise train` with no arguments. Nothing is timed.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w168
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
( timeout 400 python3 -m shardwise.cli train --output.dir=/tmp/qs --output.progress=false > $OUT/quickstart.log 2>&1
  echo "shardwise train (no arguments), 2 GPUs: exit $? [at $SECONDS s]" > /tmp/qs.txt ) &
ARCH_NAMES="qwen2_moe qwen3_moe mixtral olmoe" ARCH_LAYOUTS="tp2 dp2" RUN_TIMEOUT=300 SMOKE_WORK=$W \
  timeout 520 bash benchmarks/gpu_archs.sh > $OUT/archs.out 2>&1
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs $W $OUT >> $OUT/archs.out 2>&1
wait
echo "gpu_archs exit $rc after $SECONDS s"
cat /tmp/qs.txt; grep -E "^shardwise|done" $OUT/quickstart.log | tail -n 3
cp $W/steps.tsv $OUT/ 2>/dev/null; cp .carry/run168.sh $OUT/run.sh
cd $W && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
tail -n 30 $OUT/archs.out
