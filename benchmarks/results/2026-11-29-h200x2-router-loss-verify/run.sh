#!/usr/bin/env bash
# Device call 177 (2 GPUs), session 40: is OLMoE's tp=2 gap on GPUs (calls 173, 176) a fault? (1) the test suite's
# parity check against plain transformers (CPU reference) run on the GPUs: Mixtral, OLMoE, Qwen2-MoE with the routers'
# loss at 1, 4 steps fp32 eager, at tp=2 (heads split and attention per sequence) and dp_shard=2 (.carry/gpu_verify.py);
# (2) gpu_archs.sh's OLMoE check at tp=2 as calls 173/176 ran it but with the loss off.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
R=$OUT/2026-11-29-h200x2-router-loss-verify W=/tmp/w177
mkdir -p $R; cp .carry/run177.sh $R/run.sh; cp .carry/gpu_verify.py $R/
timeout 300 python3 .carry/gpu_verify.py $R/verify.json > $R/verify.out 2>&1; echo "gpu_verify exit $? after $SECONDS s"
grep -E "^==|FAIL" $R/verify.out; echo "PASS lines: $(grep -c PASS $R/verify.out)"
ARCH_NAMES=olmoe ARCH_LAYOUTS="tp2" ARCH_FLAGS="--train.router_aux_loss=0" RUN_TIMEOUT=200 SMOKE_WORK=$W OUT=$R \
  timeout 250 bash benchmarks/gpu_archs.sh > $R/archs.out 2>&1
echo "gpu_archs exit $? after $SECONDS s"
( cd $W && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && tar czf $R/work.tgz -T /tmp/list steps.tsv )
tail -n 6 $R/archs.out
