#!/usr/bin/env bash
# Session 35, this 2-core CPU machine (no GPU), main a5935f5's tree: `shardwise bench` at the quick start's own
# layout (dp_shard=2 x tp=2 on 4 gloo processes, tiny-qwen2, micro-batch 8, seq 256; warmup 3, median of 10),
# heads split against attention per sequence, interleaved twice in one shell.
for i in 1 2; do for m in heads sequences; do
  shardwise bench --parallel.tp_attention=$m --output.dir=/tmp/cpub/$m$i > /tmp/cpub/$m$i.log 2>&1
done; done
