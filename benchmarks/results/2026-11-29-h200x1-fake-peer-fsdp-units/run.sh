#!/usr/bin/env bash
# Device call 160 (1 GPU), session 37, EXPERIMENT (working tree: SHARDWISE_FSDP_BLOCKS=k shards k blocks as one FSDP
# unit, not committed): rank 0's share of dp_shard=2 with its collectives faked (.carry/fake_peer.py, as call 142),
# one FSDP unit per block against one per 2 blocks. Session 15 found the H200 forward host-bound, ~1.2 ms of FSDP
# pre_forward a block; call 142 found this row's GPU 88% busy. Qwen2-1.5B shapes, seq 4096, GB 8, micro-batch 4, fp32
# master weights, compiled, no checkpointing, blocks kept gathered; warmup 2, median of 8.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w160; rm -rf $W; mkdir -p $W; END=250
source benchmarks/stream_rows.sh
COMMON="--model.preset=qwen2-1.5b --train.seq_len=4096 --train.activation_checkpointing=none --train.compile=true
  --train.global_batch_size=8 --parallel.tp=1 --parallel.dp_shard=2 --train.micro_batch_size=4
  --parallel.reshard_after_forward=false --bench.warmup=2 --bench.steps=8"
fake() {  # K TIMEOUT
  local k=$1 t=$2
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "[k$k skipped: no time left]"; return; }
  mkdir -p $W/f
  SHARDWISE_FSDP_BLOCKS=$k timeout -k 5 $t python3 .carry/fake_peer.py $COMMON --output.dir=$W/f/k$k \
    --bench.out=$W/f/k$k.json > $W/f/k$k.log 2>&1
  echo "k$k exit $? at $((SECONDS - T0)) s"; grep -m1 -o "Error.\{0,300\}" $W/f/k$k.log
}
fake 1 115
fake 2 115
fake 4 115
cp .carry/run160.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
