#!/usr/bin/env bash
# Device call 105 (2 GPUs; 4-GPU kinds were not lent), session 25, main d60866a, after the fixes of calls 103-104 (the Qwen2-MoE loader, Phi-3 under flex): every architecture's plan file beyond Qwen2 on GPUs for the first time
# (benchmarks/gpu_archs.sh): per model_type a random-init bf16 folder (8 layers, hidden 512, 8/4 heads), 50 bf16 steps
# of packed rows, seq 1024: 1 GPU eager with the dense mask (reference) against tp=2 with the GPUs' defaults
# (compiled blocks, flex block masks); loss curves within 2%, plan memory above every peak.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
RUN_TIMEOUT=360 SMOKE_WORK=/tmp/w105 timeout 570 bash benchmarks/gpu_archs.sh
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs /tmp/w105 $OUT
echo "gpu_archs exit $rc"
cp /tmp/w105/steps.tsv $OUT/ 2>/dev/null; cp .carry/run105.sh $OUT/run.sh
# what report-archs reads, so that it can be run again off the machine
cd /tmp/w105 && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
