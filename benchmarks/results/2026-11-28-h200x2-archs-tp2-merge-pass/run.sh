#!/usr/bin/env bash
# Device call 123 (2 GPUs), session 30: main with shardwise.fuse's merge pass (sessions 28-30), as a user gets it on
# 2 GPUs: every architecture's plan at tp=2 (benchmarks/gpu_archs.sh, ARCH_LAYOUTS=tp2: compiled blocks with the pass,
# flex block masks; each 50-step bf16 curve against 1 GPU eager with the dense mask), and beside it README's quick
# start, `shardwise train` with no arguments (tp=2 over both GPUs, compiled). Nothing is timed: the runs share the GPUs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
git log --oneline -1 2>/dev/null
( timeout 400 python3 -m shardwise.cli train --output.dir=/tmp/qs --output.progress=false > $OUT/quickstart.log 2>&1
  echo "shardwise train (no arguments), 2 GPUs: exit $? [at $SECONDS s]" > /tmp/qs.txt ) &
ARCH_LAYOUTS=tp2 RUN_TIMEOUT=300 SMOKE_WORK=/tmp/w123 timeout 520 bash benchmarks/gpu_archs.sh > $OUT/archs.out 2>&1
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs /tmp/w123 $OUT >> $OUT/archs.out 2>&1
wait
echo "gpu_archs exit $rc after $SECONDS s"
cat /tmp/qs.txt; grep -E "^shardwise|done" $OUT/quickstart.log | tail -n 3
cp /tmp/w123/steps.tsv $OUT/ 2>/dev/null; cp .carry/run123.sh $OUT/run.sh
cd /tmp/w123 && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
tail -n 32 $OUT/archs.out
