#!/usr/bin/env bash
# Device call 131 (2 GPUs), session 31: does a TP run with train.cudagraphs=true exit once it has finished? Bench rows
# with graphs were killed by their timeouts after writing their results (sessions 9, 16, 31): NCCL cannot destroy a
# communicator while a CUDA graph that captured its collectives lives (pytorch/pytorch#115388). README's `shardwise
# train` (tiny-qwen2, tp=2, eager blocks replayed as CUDA graphs, 20 steps) on main 162c45b (.carry/base) and on the
# working tree (Run.close frees the graphs before the group goes); each line stamped with seconds since its start.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
for tree in base new; do
  src=$PWD/src; [ $tree = base ] && src=$PWD/.carry/base/src
  t0=$SECONDS
  PYTHONPATH=$src:/tmp/site timeout -k 5 80 python3 -m shardwise.cli train --model.preset=tiny-qwen2 --parallel.tp=2 \
    --train.compile=false --train.cudagraphs=true --train.steps=20 --train.eval_every=10 --output.progress=false \
    --output.dir=/tmp/g-$tree 2>&1 | while IFS= read -r l; do echo "$((SECONDS - t0)) $l"; done > $OUT/train-$tree.log
  echo "$tree: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s; $(grep -m1 'done:' $OUT/train-$tree.log)"
done | tee $OUT/summary.txt
cp .carry/run131.sh $OUT/run.sh
