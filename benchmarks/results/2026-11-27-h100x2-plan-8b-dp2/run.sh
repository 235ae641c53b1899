#!/usr/bin/env bash
# Device call 67 (2 GPUs): what `shardwise plan --device-memory-gib=80` recommends for Llama-3-8B dp_shard=2 with fp32
# master weights (full AC, micro-batch 4, blocks freed after forward; planned 71.5 GiB) against call 65's micro-batch 1.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=3
W=/tmp/w67; rm -rf $W; mkdir -p $W; END=${END:-270}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
PYTHONPATH=$PWD/src:/tmp/site python3 -m shardwise.cli plan --model.preset=llama3-8b --world-size=2 --device-memory-gib=80 \
  --parallel.tp=1 --train.seq_len=4096 --train.global_batch_size=8 --train.micro_batch_size=1 \
  --train.activation_checkpointing=full 2>&1 | grep "total (peak\|recommended\|FSDP blocks" | tee $OUT/plan.txt
mkdir -p $W/8b-dp2-mb4; t0=$SECONDS  # no sweep row has full AC at micro-batch 4: the same command as sw-full-compile's
PYTHONPATH=$PWD/src:/tmp/site timeout -k 5 120 python3 -m shardwise.cli bench --model.preset=llama3-8b --parallel.tp=1 \
  --train.seq_len=4096 --bench.warmup=2 --bench.steps=3 --train.activation_checkpointing=full --train.compile=true \
  --train.micro_batch_size=4 --train.global_batch_size=8 --bench.out=$W/8b-dp2-mb4/sw-full-compile-mb4.json \
  --output.dir=$W/8b-dp2-mb4/run > $W/8b-dp2-mb4/sw-full-compile-mb4.log 2>&1
echo "8b-dp2-mb4: exit $? in $((SECONDS - t0)) s"; grep -h "shardwise: \|Error" $W/8b-dp2-mb4/sw-full-compile-mb4.log | head -3
row c 8b-dp2-mb1 llama3-8b 4096 1 8 sw-full-compile 120 ""
cp .carry/run67.sh $OUT/run.sh
summarize $OUT
