#!/usr/bin/env bash
# Device call 97 (2 GPUs), session 23: README's GPU smoke (benchmarks/gpu_smoke.sh, six checks, check 5 with cp=2) on main 1e199a9
# (after sessions 22-23's launch changes); installed as README says, pip install --no-deps -e .
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip-e.log 2>&1 || { echo "install failed"; tail -5 /tmp/pip-e.log; }
OUT=$OUT SMOKE_WORK=/tmp/smoke-work timeout -k 5 570 bash benchmarks/gpu_smoke.sh > $OUT/stdout.txt 2>&1; echo "gpu_smoke exit $? in $((SECONDS - t0)) s"
tail -25 $OUT/stdout.txt
cp /tmp/smoke-work/steps.tsv $OUT/ 2>/dev/null; cp .carry/run97.sh $OUT/run.sh
