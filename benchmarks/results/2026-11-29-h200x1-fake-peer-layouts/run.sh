#!/usr/bin/env bash
# Device call 142 (1 GPU), session 34: where dp_shard=2's step goes besides communication. Call 140 found rank 0's
# share of the tp=2 step, collectives faked, at 0.304 s, while dp_shard=2 ran 0.345 s on 2xH200 (call 138) and one
# GPU at the same work per GPU 0.332 s. Here, in one call: rank 0's share of dp_shard=2 with its collectives faked
# (FSDP blocks kept gathered, as auto picks on these GPUs), and of tp=2; each timed and then profiled, and their
# kernel tables kept. Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no checkpointing.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w142; rm -rf $W; mkdir -p $W; END=570
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
COMMON="--model.preset=qwen2-1.5b --train.seq_len=4096 --train.activation_checkpointing=none --train.compile=true
  --train.global_batch_size=8"
fake() {  # DIR NAME TIMEOUT EXTRA...
  local d=$1 name=$2 t=$3; shift 3
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "[$d/$name skipped: no time left]"; return; }
  mkdir -p $W/$d
  timeout -k 5 $t python3 .carry/fake_peer.py $COMMON --output.dir=$W/$d/$name --bench.out=$W/$d/$name.json \
    "$@" > $W/$d/$name.log 2>&1
  echo "$d/$name exit $? at $((SECONDS - T0)) s"; grep -m1 -o "Error.\{0,300\}" $W/$d/$name.log
}
DP2="--parallel.tp=1 --parallel.dp_shard=2 --train.micro_batch_size=4 --parallel.reshard_after_forward=false"
TP2="--parallel.tp=2 --parallel.dp_shard=1 --train.micro_batch_size=8"
fake f dp2 120 $DP2 --bench.warmup=2 --bench.steps=8
fake f tp2 120 $TP2 --bench.warmup=2 --bench.steps=8
fake f-prof dp2 100 $DP2 --bench.warmup=2 --bench.steps=2 --bench.profile=true
fake f-prof tp2 100 $TP2 --bench.warmup=2 --bench.steps=2 --bench.profile=true
for n in dp2 tp2; do cp $W/f-prof/$n/profile-kernels.txt $OUT/kernels-$n.txt 2>/dev/null; done
cp .carry/run142.sh $OUT/run.sh; cp .carry/fake_peer.py $OUT/
summarize $OUT | tee $OUT/summary.txt
for n in dp2 tp2; do echo "==== $n"; head -9 $OUT/kernels-$n.txt; done
