#!/usr/bin/env bash
# Device call 82 (2 GPUs). (1) flex compile time, forward + backward, Qwen2-1.5B's attention shapes at seq 16,384,
# documents of 2048: square rows, CP's shape (8192 queries x 16,384 keys) with index tensors (d19cb2a's mask_mod)
# and with indices by arithmetic (cp.ordered_token, this tree), each a fresh process with its own empty inductor
# cache, the three at once (two on GPU 0). (2) Qwen2-1.5B seq 16,384 cp=2 GB 2, compiled, no AC, packed rows of
# ~2048: the dense mask against the default (auto: flex under CP on this tree), each row's wall time printed.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w82; rm -rf $W; mkdir -p $W; END=540
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
t0=$SECONDS
for kind in square cp-index cp-arith; do
  gpu=$([ $kind = cp-index ] && echo 1 || echo 0)
  (CUDA_VISIBLE_DEVICES=$gpu TORCHINDUCTOR_CACHE_DIR=$W/cache-$kind TRITON_CACHE_DIR=$W/triton-$kind \
     timeout 240 python3 .carry/exp82.py $kind > $W/$kind.json 2> $W/$kind.err; echo "$kind exit $? at $((SECONDS - t0)) s") &
done
wait
cat $W/*.json | tee $OUT/flex-compile.json; for f in $W/*.err; do tail -n 2 $f | cut -c1-200; done
source benchmarks/stream_rows.sh
export WARMUP=2 STEPS=5
DOCS="--parallel.cp=2 --bench.document_len=2048"
s=$SECONDS; row a cp2-mask qwen2-1.5b 16384 1 2 sw-none-compile 120 "$DOCS --model.packed_attention=mask"; echo "cp2-mask row: $((SECONDS - s)) s"
s=$SECONDS; row a cp2-auto qwen2-1.5b 16384 1 2 sw-none-compile 260 "$DOCS"; echo "cp2-auto row: $((SECONDS - s)) s"
summarize $OUT
cp .carry/run82.sh .carry/exp82.py $OUT/
