#!/usr/bin/env bash
# Device call 167 (1 GPU), session 38: the step's tail (gradient norm, clipping, AdamW) on the DTensors' local
# tensors against the same through DTensor's dispatch (call 162: 19 ms of GPU idle there in dp_shard=2's 0.34 s);
# call 165 again on main as committed (the change with its two mends, and tp.sum_partial_grads under no_grad).
# Rank 0's share of each step with its collectives faked (benchmarks/fake_peer.py), one call, alternating trees:
# .carry/old/src (main before the change) and src (the change). Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights,
# compiled, no checkpointing; dp_shard=2 micro-batch 4 (blocks kept gathered), tp=2 micro-batch 8 per sequence.
# Warmup 2, median of 8, then one step profiled; benchmarks/trace_gaps.py on each trace.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w167; rm -rf $W; mkdir -p $W; END=400
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
COMMON="--model.preset=qwen2-1.5b --train.seq_len=4096 --train.activation_checkpointing=none --train.compile=true
  --train.global_batch_size=8 --bench.warmup=2 --bench.steps=8 --bench.profile=true"
DP2="--parallel.tp=1 --parallel.dp_shard=2 --train.micro_batch_size=4 --parallel.reshard_after_forward=false"
TP2="--parallel.tp=2 --parallel.dp_shard=1 --train.micro_batch_size=8 --parallel.tp_attention=sequences"
fake() {  # NAME SRC TIMEOUT EXTRA...
  local name=$1 src=$2 t=$3; shift 3
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "[$name skipped: no time left]"; return; }
  mkdir -p $W/f
  PYTHONPATH=$PWD/$src:/tmp/site timeout -k 5 $t python3 benchmarks/fake_peer.py $COMMON --output.dir=$W/f/$name \
    --bench.out=$W/f/$name.json "$@" > $W/f/$name.log 2>&1
  echo "$name exit $? at $((SECONDS - T0)) s"; grep -m1 -o "Error.\{0,300\}" $W/f/$name.log
}
fake dp2-old .carry/old/src 100 $DP2
fake dp2-new src 100 $DP2
fake tp2-old .carry/old/src 100 $TP2
fake tp2-new src 100 $TP2
fake tp2-old2 .carry/old/src 100 $TP2
fake tp2-new2 src 100 $TP2
fake dp2-old2 .carry/old/src 100 $DP2
fake dp2-new2 src 100 $DP2
export PYTHONPATH=$PWD/src:/tmp/site
{ for n in dp2-old dp2-new tp2-old tp2-new; do python3 benchmarks/trace_gaps.py --largest 12 $W/f/$n/trace-rank0.json; done
} > $OUT/analysis.txt 2>&1
for f in $W/f/*.json; do python3 -c "import json,sys; print(sys.argv[1], json.load(open(sys.argv[1]))['versions']['shardwise'])" $f; done
cp .carry/run167.sh $OUT/run.sh
summarize $OUT | tee $OUT/summary.txt
grep -A3 "^== " $OUT/analysis.txt | head -60
