#!/usr/bin/env bash
# Device call 162 (1 GPU), session 38: where the GPU idles in rank 0's share of a step with its collectives faked
# (.carry/fake_peer.py, as calls 142 and 160: torch's FakeProcessGroup, 2 ranks, one process). Call 142 found the
# dp_shard=2 share 88% GPU-busy and tp=2's 85%, with nothing to wait for but the host; nobody listed the gaps.
# Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no checkpointing: dp_shard=2 at micro-batch 4
# (blocks kept gathered, as auto picks), tp=2 at micro-batch 8 (attention per sequence, as auto picks on GPUs).
# Each: warmup 2, median of 6, one step profiled; benchmarks/trace_gaps.py --largest 16 and streams.py on its trace.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w162; rm -rf $W; mkdir -p $W; END=300
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
COMMON="--model.preset=qwen2-1.5b --train.seq_len=4096 --train.activation_checkpointing=none --train.compile=true
  --train.global_batch_size=8 --bench.warmup=2 --bench.steps=6 --bench.profile=true"
fake() {  # NAME TIMEOUT EXTRA...
  local name=$1 t=$2; shift 2
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "[$name skipped: no time left]"; return; }
  mkdir -p $W/f
  timeout -k 5 $t python3 .carry/fake_peer.py $COMMON --output.dir=$W/f/$name --bench.out=$W/f/$name.json \
    "$@" > $W/f/$name.log 2>&1
  echo "$name exit $? at $((SECONDS - T0)) s"; grep -m1 -o "Error.\{0,300\}" $W/f/$name.log
}
fake dp2 130 --parallel.tp=1 --parallel.dp_shard=2 --train.micro_batch_size=4 --parallel.reshard_after_forward=false
fake tp2 130 --parallel.tp=2 --parallel.dp_shard=1 --train.micro_batch_size=8 --parallel.tp_attention=sequences
{ for n in dp2 tp2; do python3 benchmarks/trace_gaps.py --largest 16 $W/f/$n/trace-rank0.json; done
  python3 .carry/streams.py dp2=$W/f/dp2/trace-rank0.json tp2=$W/f/tp2/trace-rank0.json
  for n in dp2 tp2; do echo "==== $n"; head -30 $W/f/$n/profile-kernels.txt; done
} > $OUT/analysis.txt 2>&1
cp .carry/run162.sh $OUT/run.sh; cp .carry/fake_peer.py .carry/streams.py $OUT/
summarize $OUT | tee $OUT/summary.txt
head -c 9000 $OUT/analysis.txt
