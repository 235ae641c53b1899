#!/usr/bin/env bash
# On the 2-core CPU development machine, 2026-11-27 (torch 2.13.0+cpu, Python 3.11): shardwise train, tiny-gemma3, fp32,
# 30 steps, 1 process against cp=2 (dense masks), with base = main 80b8dbc (its src copied to .carry/base) and new =
# the tree of 2f3ee21 (model.materialize re-ties the head). Losses in {base,new}-cp{1,2}.metrics.jsonl: largest
# relative gap 9.2e-2 before, 2.4e-6 after.
A=(--model.preset=tiny-gemma3 --parallel.tp=1 --parallel.dp_shard=1 --train.seq_len=2048 --train.steps=30 --train.global_batch_size=4
   --train.micro_batch_size=2 --train.dtype=float32 --train.compile=false --train.activation_checkpointing=none
   --train.eval_every=0 --output.progress=false --data.max_bytes=2000000 --checkpoint.every=0)
cd /tmp/tie
for tree in base new; do
  src=/work/main/src; [ $tree = base ] && src=/work/main/.carry/base/src
  for cp in 1 2; do
    PYTHONPATH=$src timeout 900 python -m shardwise.cli train "${A[@]}" --parallel.cp=$cp --output.dir=/tmp/tie/$tree-cp$cp > /tmp/tie/$tree-cp$cp.log 2>&1
    echo "$tree cp$cp exit $?"
  done
done
