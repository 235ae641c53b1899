#!/usr/bin/env bash
# Device call 179 (2 GPUs), session 40: OLMoE's tp=2 gap (calls 173, 176: 1.9e-3 by step 10 with the routers' loss at
# 0.1; call 177: 4.3e-6 without) on other data orders: gpu_archs.sh's OLMoE check at tp=2 with --train.seed=1 and =2
# with the loss at 0.1, and --train.seed=1 without it. Each prints its check line as it ends.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
R=$OUT/2026-11-29-h200x2-router-loss-seeds
mkdir -p $R; cp .carry/run179.sh $R/run.sh
for v in "seed1-loss0.1:--train.seed=1 --train.router_aux_loss=0.1" "seed2-loss0.1:--train.seed=2 --train.router_aux_loss=0.1" \
         "seed1-loss0:--train.seed=1 --train.router_aux_loss=0"; do
  name=${v%%:*}
  ARCH_NAMES=olmoe ARCH_LAYOUTS=tp2 ARCH_FLAGS="${v#*:}" RUN_TIMEOUT=150 SMOKE_WORK=/tmp/w179-$name OUT=$R/$name \
    timeout 160 bash benchmarks/gpu_archs.sh > $R/$name.out 2>&1
  echo "$name: $(grep 'eager tp2 vs 1' $R/$name.out) [$SECONDS s]" | tee -a $R/summary.txt
done
