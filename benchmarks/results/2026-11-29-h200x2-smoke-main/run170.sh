#!/usr/bin/env bash
# Device call 170 (2 GPUs), session 39: README's GPU smoke (benchmarks/gpu_smoke.sh, six checks) whole on main b2a4a31+
# (last run whole in session 31; since then attention per sequence by default, the step's tail on local tensors), installed as README
# says (pip install --no-deps -e .). About 580 s of runs on 2xH200: should it run out this call's limit, call 171 on
# the same warm machine runs what did not finish, as the script does, then the report.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip-e.log 2>&1 || { echo "install failed"; tail -5 /tmp/pip-e.log; }
cp .carry/run170.sh $OUT/run170.sh
OUT=$OUT SMOKE_WORK=/tmp/smoke-work timeout -k 5 575 bash benchmarks/gpu_smoke.sh > $OUT/stdout-call170.txt 2>&1
echo "gpu_smoke exit $? in $((SECONDS - t0)) s"
tail -25 $OUT/stdout-call170.txt
cp /tmp/smoke-work/steps.tsv $OUT/ 2>/dev/null
