#!/usr/bin/env bash
# Device call 140 (1 GPU), session 34: only nvidia-h200 was lent. What one GPU can say about attention per sequence
# (parallel.tp_attention=sequences) before any 2-GPU call: rank 0's share of the tp=2 step with its collectives
# moving nothing (fake_peer.py, torch's FakeProcessGroup: the compute of that step, compiled by inductor with the
# collectives in its graphs), split by heads and per sequence, beside one GPU's own step at the same work per GPU
# (micro-batch 4, the per-GPU share of dp_shard=2 without FSDP). Qwen2-1.5B shapes, seq 4096, fp32 master weights,
# compiled, no checkpointing; warmup 2, median of 8; then one profiled step of each TP row.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w140; rm -rf $W; mkdir -p $W; END=570
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
COMMON="--model.preset=qwen2-1.5b --train.seq_len=4096 --train.activation_checkpointing=none --train.compile=true"
fake() {  # DIR NAME TIMEOUT EXTRA...
  local d=$1 name=$2 t=$3; shift 3
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "[$d/$name skipped: no time left]"; return; }
  mkdir -p $W/$d
  timeout -k 5 $t python3 .carry/fake_peer.py $COMMON --parallel.tp=2 --parallel.dp_shard=1 \
    --train.global_batch_size=8 --train.micro_batch_size=8 --output.dir=$W/$d/$name --bench.out=$W/$d/$name.json \
    "$@" > $W/$d/$name.log 2>&1
  echo "$d/$name exit $? at $((SECONDS - T0)) s"; grep -m1 -o "Error.\{0,300\}" $W/$d/$name.log
}
fake f-tp2 heads 120 --bench.warmup=2 --bench.steps=8
fake f-tp2 sequences 120 --bench.warmup=2 --bench.steps=8 --parallel.tp_attention=sequences
WARMUP=2 STEPS=8 row a g1 qwen2-1.5b 4096 1 4 sw-none-compile-mb4 120 ""
fake f-tp2-prof heads 100 --bench.warmup=2 --bench.steps=2 --bench.profile=true
fake f-tp2-prof sequences 100 --bench.warmup=2 --bench.steps=2 --bench.profile=true --parallel.tp_attention=sequences
for f in $W/f-tp2-prof/*/profile-kernels.txt; do [ -f "$f" ] && { echo "==== $f"; head -30 "$f"; }; done
cp .carry/run140.sh .carry/fake_peer.py $OUT/
summarize $OUT | tee $OUT/summary.txt
