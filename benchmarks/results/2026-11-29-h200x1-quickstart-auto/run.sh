#!/usr/bin/env bash
# Device call 147 (1 GPU), session 35: README's quick start on main 77dfda5's tree on the one lent GPU (`shardwise
# train` with no arguments: the launcher's plan now goes through parallel.tp_attention's choice too), then what
# `shardwise plan` chooses under parallel.tp_attention=auto for this GPU's memory at the issue's tp=2 shapes.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS
timeout 400 python3 -m shardwise.cli train --output.dir=/tmp/qs --output.progress=false > $OUT/quickstart.log 2>&1
echo "shardwise train: exit $? in $((SECONDS - T0)) s"; grep "shardwise: note" $OUT/quickstart.log; tail -2 $OUT/quickstart.log
for mb in 8 1; do for p in "" "--parallel.tp_attention=auto"; do
  echo "== qwen2-1.5b tp=2 mb $mb $p"
  python3 -m shardwise.cli plan --model.preset=qwen2-1.5b --parallel.tp=2 --world-size=2 --train.seq_len=4096 \
    --train.global_batch_size=8 --train.micro_batch_size=$mb $p | grep -E "attention|total \(peak|recommended"
done; done > $OUT/plan.txt 2>&1; cat $OUT/plan.txt
cp .carry/run147.sh $OUT/run.sh
