#!/usr/bin/env bash
# Device call 107 (4 GPUs), session 26, main 0799979: every architecture's plan file at dp_shard=2 x tp=2 (the 2D layout) on GPUs
# (benchmarks/gpu_archs.sh): per model_type a random-init bf16 folder (8 layers, hidden 512, 8/4 heads), 50 bf16 steps
# of packed rows, seq 1024: 1 GPU eager with the dense mask (reference) against dp_shard=2 x tp=2 with the GPUs' defaults
# (compiled blocks, flex block masks); loss curves within 2%, plan memory above every peak.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
ARCH_LAYOUTS=dp2xtp2 RUN_TIMEOUT=330 SMOKE_WORK=/tmp/w107 timeout 570 bash benchmarks/gpu_archs.sh
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs /tmp/w107 $OUT
echo "gpu_archs exit $rc"
cp /tmp/w107/steps.tsv $OUT/ 2>/dev/null; cp .carry/run107.sh $OUT/run.sh
# what report-archs reads, so that it can be run again off the machine
cd /tmp/w107 && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
