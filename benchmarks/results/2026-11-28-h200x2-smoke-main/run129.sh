#!/usr/bin/env bash
# Device call 129 (2 GPUs), session 31: README's GPU smoke (benchmarks/gpu_smoke.sh, six checks) whole on main 162c45b
# (last run whole in session 23; since then flex's fixes, the merge pass, the collector schedule), installed as README
# says (pip install --no-deps -e .). About 580 s of runs on 2xH200: should it run out this call's limit, call 130 on
# the same warm machine runs what did not finish, as the script does, then the report.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip-e.log 2>&1 || { echo "install failed"; tail -5 /tmp/pip-e.log; }
cp .carry/run129.sh $OUT/run129.sh
OUT=$OUT SMOKE_WORK=/tmp/smoke-work timeout -k 5 575 bash benchmarks/gpu_smoke.sh > $OUT/stdout-call129.txt 2>&1
echo "gpu_smoke exit $? in $((SECONDS - t0)) s"
tail -25 $OUT/stdout-call129.txt
cp /tmp/smoke-work/steps.tsv $OUT/ 2>/dev/null
