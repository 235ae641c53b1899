#!/usr/bin/env bash
# Device call 139 (1 GPU: no 2-GPU kind was lent at the session's end), session 33: README's quick start on a GPU on
# this session's final tree (the global-batch check reworded): `shardwise train` with no arguments (one GPU, compiled),
# then GB 3 at micro-batch 2 refused in one line before any process starts. Each line of the run stamped with seconds since its start.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
python3 -m pip install -q --no-deps --no-build-isolation -e . > /tmp/pip2.log 2>&1 || cat /tmp/pip2.log
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
cp .carry/run139.sh $OUT/run.sh
cd /tmp && t0=$SECONDS
timeout -k 5 240 shardwise train --output.progress=false 2>&1 | while IFS= read -r l; do echo "$((SECONDS - t0)) $l"; done > $OUT/train.log
echo "shardwise train: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee $OUT/summary.txt
grep -E "step +(1|50|100|150|200|250)\b|done:|val_loss|mesh|layout" $OUT/train.log | head -20 | tee -a $OUT/summary.txt
timeout 60 shardwise train --train.global_batch_size=3 --train.micro_batch_size=2 --output.dir=/tmp/never > $OUT/refuse.log 2>&1
echo "shardwise train --train.global_batch_size=3 --train.micro_batch_size=2: exit $?, $(cat $OUT/refuse.log), output.dir created: $([ -e /tmp/never ] && echo yes || echo no)" | tee -a $OUT/summary.txt
