#!/usr/bin/env bash
# Device call 144 (1 GPU), session 34: README's quick start on the session's last tree, on the one lent GPU:
# `shardwise train` with no arguments (compiled, one GPU), then one refused input of the new key.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
git log --oneline -1 2>/dev/null
T0=$SECONDS
timeout 400 python3 -m shardwise.cli train --output.dir=/tmp/qs --output.progress=false > $OUT/quickstart.log 2>&1
echo "shardwise train: exit $? in $((SECONDS - T0)) s"; tail -2 $OUT/quickstart.log
python3 -m shardwise.cli train --output.dir=/tmp/bad --parallel.tp_attention=sequences --parallel.sequence_parallel=false \
  > $OUT/refused.log 2>&1; echo "refused: exit $?, output.dir made: $([ -e /tmp/bad ] && echo yes || echo no)"
cat $OUT/refused.log
cp .carry/run144.sh $OUT/run.sh
