#!/usr/bin/env bash
# Device call 103 (4 GPUs), session 25: every architecture's plan file beyond Qwen2 on GPUs for the first time
# (benchmarks/gpu_archs.sh): per model_type a random-init bf16 folder (8 layers, hidden 512, 8/4 heads), 50 bf16 steps
# of packed rows, seq 1024: 1 GPU eager with the dense mask (reference) against tp=2 with the GPUs' defaults
# (compiled blocks, flex block masks); loss curves within 2%, plan memory above every peak.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
RUN_TIMEOUT=400 SMOKE_WORK=/tmp/w103 timeout 560 bash benchmarks/gpu_archs.sh
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs /tmp/w103 $OUT
echo "gpu_archs exit $rc"
cp /tmp/w103/steps.tsv $OUT/ 2>/dev/null; cp .carry/run103.sh $OUT/run.sh
# what report-archs reads, so that it can be run again off the machine
cd /tmp/w103 && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
