#!/usr/bin/env bash
# Device call 164 (2 GPUs), session 38: every architecture's plan at tp=2 as a user gets it on 2 GPUs
# (benchmarks/gpu_archs.sh, ARCH_LAYOUTS=tp2: compiled blocks, flex block masks; each 50-step curve against 1 GPU eager
# with the dense mask; the MoE families in fp32 eager, smoke_checks.MOE_FLAGS): the first 2-GPU run of Mixtral, OLMoE,
# Qwen3-MoE and of the fp32 MoE check; beside it README's `shardwise train` with no arguments. Nothing is timed.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
git log --oneline -1 2>/dev/null
( timeout 400 python3 -m shardwise.cli train --output.dir=/tmp/qs --output.progress=false > $OUT/quickstart.log 2>&1
  echo "shardwise train (no arguments), 2 GPUs: exit $? [at $SECONDS s]" > /tmp/qs.txt ) &
ARCH_LAYOUTS=tp2 RUN_TIMEOUT=300 SMOKE_WORK=/tmp/w164 timeout 540 bash benchmarks/gpu_archs.sh > $OUT/archs.out 2>&1
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs /tmp/w164 $OUT >> $OUT/archs.out 2>&1
wait
echo "gpu_archs exit $rc after $SECONDS s"
cat /tmp/qs.txt; grep -E "^shardwise|done" $OUT/quickstart.log | tail -n 3
cp /tmp/w164/steps.tsv $OUT/ 2>/dev/null; cp .carry/run164.sh $OUT/run.sh
cd /tmp/w164 && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
tail -n 32 $OUT/archs.out
