#!/usr/bin/env bash
# Device call 104 (2 GPUs), session 25: why Phi-3 at tp=2 died of SIGFPE on GPUs in call 103 (compiled, flex, NCCL
# all-to-all of its fused projections' rows: which one). a2a.py: regroup alone, eager and compiled; then 5 steps of
# call 103's phi3-tp2 run eager, compiled with the dense mask, and with the defaults, Python's faulthandler on.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
W=/tmp/w104; rm -rf $W; mkdir -p $W
timeout 120 python3 -m torch.distributed.run --standalone --nproc-per-node=2 .carry/a2a.py > $OUT/a2a.txt 2>&1; echo "a2a exit $?"
grep -v Warn $OUT/a2a.txt | tail -12
python3 benchmarks/smoke_checks.py prepare-archs $W > $W/prepare.log 2>&1 || tail $W/prepare.log
C=(--model.path=$W/phi3 --train.steps=5 --train.seq_len=1024 --train.global_batch_size=8 --train.micro_batch_size=4
   --train.eval_every=0 --parallel.dp_shard=1 --parallel.tp=2 --data.max_bytes=1000000 --output.progress=false)
for case in "eager --train.compile=false" "mask --model.packed_attention=mask" "default" "nosp --parallel.sequence_parallel=false"; do
  set -- $case; name=$1; shift
  timeout 150 python3 -m shardwise.cli train --output.dir=$W/runs/$name "${C[@]}" "$@" > $OUT/phi3-$name.log 2>&1
  echo "phi3 tp2 $name: exit $?"; tail -c 1500 $OUT/phi3-$name.log | tail -25
done
cp .carry/run104.sh $OUT/run.sh; cp .carry/a2a.py $OUT/
