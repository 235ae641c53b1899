#!/usr/bin/env bash
# Device call 110 (4 GPUs), session 26, the working tree (MLP input gathered as (tokens, hidden)): every architecture's plan
# file at tp=2 again (benchmarks/gpu_archs.sh, 4 queues of 2 GPUs): per model_type a random-init bf16 folder, 50 bf16 steps
# of packed rows, seq 1024: 1 GPU eager with the dense mask (reference) against tp=2 with the GPUs' defaults (compiled
# blocks, flex block masks); beside it README's `shardwise train` with no arguments (dp_shard=2 x tp=2 on 4 GPUs).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
( timeout 300 python3 -m shardwise.cli train --output.dir=/tmp/qs --output.progress=false > $OUT/quickstart.log 2>&1; echo "quick start exit $?" >> $OUT/quickstart.log ) &
ARCH_LAYOUTS=tp2 RUN_TIMEOUT=300 SMOKE_WORK=/tmp/w110 timeout 540 bash benchmarks/gpu_archs.sh
rc=$?
wait; tail -n 4 $OUT/quickstart.log
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs /tmp/w110 $OUT
echo "gpu_archs exit $rc"
cp /tmp/w110/steps.tsv $OUT/ 2>/dev/null; cp .carry/run110.sh $OUT/run.sh
# what report-archs reads, so that it can be run again off the machine
cd /tmp/w110 && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
