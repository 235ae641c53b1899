#!/usr/bin/env bash
# Device call 122 (1 GPU), session 29: main's one-line refusal of compiled MoE experts outside bf16 on the GPU image
# (transformers 5.17), the same preset with its defaults (bf16 compute: grouped_mm, compiled), and README's quick
# start with no arguments on one GPU.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
export PYTHONPATH=$PWD/src:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
M=(--model.preset=tiny-qwen2-moe --parallel.tp=1 --train.steps=20 --train.seq_len=512 --train.global_batch_size=4
   --train.micro_batch_size=4 --train.eval_every=0 --output.progress=false)
timeout 200 python3 -m shardwise.cli train "${M[@]}" --train.dtype=float32 --output.dir=/tmp/moe-fp32 > $OUT/moe-fp32.log 2>&1
echo "moe fp32 compiled: exit $? [at $SECONDS s], output.dir created: $([ -e /tmp/moe-fp32 ] && echo yes || echo no)" | tee $OUT/rows.txt
tail -n 2 $OUT/moe-fp32.log | tee -a $OUT/rows.txt
timeout 200 python3 -m shardwise.cli train "${M[@]}" --output.dir=/tmp/moe-auto > $OUT/moe-auto.log 2>&1
echo "moe defaults (bf16, compiled): exit $? [at $SECONDS s]" | tee -a $OUT/rows.txt
tail -n 1 $OUT/moe-auto.log | tee -a $OUT/rows.txt
timeout 200 python3 -m shardwise.cli train > $OUT/quickstart.log 2>&1
echo "shardwise train (no arguments), 1 GPU: exit $? [at $SECONDS s]" | tee -a $OUT/rows.txt
grep -E "^shardwise|done:" $OUT/quickstart.log | tail -n 3 | tee -a $OUT/rows.txt
