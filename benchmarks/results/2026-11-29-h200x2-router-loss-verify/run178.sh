#!/usr/bin/env bash
# Device call 178 (2 GPUs), session 40: call 177's first part again, its cases now with train.compile=false (the GPUs'
# default compiled them, which transformers 5.17 refuses for fp32 experts): the test suite's parity check against plain
# transformers (CPU reference) run on the GPUs, Mixtral, OLMoE, Qwen2-MoE with the routers' loss at 1, 4 steps fp32
# eager, at tp=2 (heads split and attention per sequence) and dp_shard=2 (.carry/gpu_verify.py).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
R=$OUT/2026-11-29-h200x2-router-loss-verify
mkdir -p $R; cp .carry/run178.sh $R/run178.sh; cp .carry/gpu_verify.py $R/gpu_verify178.py
timeout 400 python3 .carry/gpu_verify.py $R/verify178.json > $R/verify178.out 2>&1; echo "gpu_verify exit $? after $SECONDS s"
grep -E "^==|FAIL|failed" $R/verify178.out; echo "PASS lines: $(grep -c PASS $R/verify178.out)"
