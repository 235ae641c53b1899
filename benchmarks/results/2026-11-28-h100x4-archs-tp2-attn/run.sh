#!/usr/bin/env bash
# Device call 114 (4 GPUs), session 27, the working tree (attention's gathered tokens as (batch, seq, hidden) straight
# from the all-gather where batch is a multiple of tp; gpu_archs' micro-batch 4 is): every architecture's plan file at
# tp=2 (benchmarks/gpu_archs.sh, 4 queues of 2 GPUs): per model_type a random-init bf16 folder, 50 bf16 steps of packed
# rows, seq 1024: 1 GPU eager with the dense mask (reference) against tp=2 with the GPUs' defaults (compiled blocks,
# flex block masks).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
ARCH_LAYOUTS=tp2 RUN_TIMEOUT=300 SMOKE_WORK=/tmp/w114 timeout 430 bash benchmarks/gpu_archs.sh
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs /tmp/w114 $OUT
echo "gpu_archs exit $rc after $SECONDS s"
cp /tmp/w114/steps.tsv $OUT/ 2>/dev/null; cp .carry/run114.sh $OUT/run.sh
cd /tmp/w114 && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
