#!/usr/bin/env bash
# Device call 87 (2 GPUs): exp84.py's `aten` builder on 8acfc12 (static shapes) at rows of 16,384 (GPU 0) and 32,768
# tokens (GPU 1), fresh caches: first and steady build, the square mask and cp=2 ranks 0 and 1 against the eager
# builder index tensor by index tensor, flex forward + backward compile and step.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w86; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
for seq in 16384 32768; do
  gpu=$([ $seq = 16384 ] && echo 0 || echo 1)
  (CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=$W/cache-$seq TRITON_CACHE_DIR=$W/triton-$seq \
     timeout 200 python3 .carry/exp84.py aten $seq > $W/$seq.json 2> $W/$seq.err; echo "$seq exit $? at $((SECONDS - t0)) s") &
done
wait
cat $W/*.json | tee $OUT/mask-compile.json; for f in $W/*.err; do grep -v Warning $f | grep -v "^\s*$" | tail -n 3 | cut -c1-300; done
cp .carry/run86.sh .carry/exp84.py $OUT/
