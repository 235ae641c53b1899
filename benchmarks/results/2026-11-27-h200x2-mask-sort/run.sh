#!/usr/bin/env bash
# Device call 84 (2 GPUs). (1) exp84.py: the BlockMask of 16,384-token rows (128 x 128 tiles) built by
# torch.compile(create_block_mask) as torch 2.11 compiles it (GPU 0) and by shardwise.flex's builder, the same
# without persistent reductions so the block indices' argsort is aten's (GPU 1), each in a fresh process with empty
# caches, at once; the builder's masks checked against the eager ones; flex forward + backward compile after each.
# (2) Qwen2-1.5B seq 16,384 cp=2 GB 2, compiled, no AC, packed rows of ~2048 (flex by default) on this tree, an
# empty inductor cache: the row's wall time from launch to its record (session 20, call 82, on 53294a1's builder:
# 257 s).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w84; rm -rf $W; mkdir -p $W; END=570
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
for b in torch aten; do
  gpu=$([ $b = torch ] && echo 0 || echo 1)
  (CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=$W/cache-$b TRITON_CACHE_DIR=$W/triton-$b \
     timeout 240 python3 .carry/exp84.py $b > $W/$b.json 2> $W/$b.err; echo "$b exit $? at $((SECONDS - t0)) s") &
done
wait
cat $W/*.json | tee $OUT/mask-compile.json; for f in $W/*.err; do grep -v Warning $f | tail -n 2 | cut -c1-200; done
source benchmarks/stream_rows.sh
export WARMUP=2 STEPS=5 TORCHINDUCTOR_CACHE_DIR=$W/cache-row TRITON_CACHE_DIR=$W/triton-row
s=$SECONDS; row a cp2-auto qwen2-1.5b 16384 1 2 sw-none-compile 240 "--parallel.cp=2 --bench.document_len=2048"
echo "cp2-auto row: $((SECONDS - s)) s from launch to record"
summarize $OUT
cp .carry/run84.sh .carry/exp84.py $OUT/
