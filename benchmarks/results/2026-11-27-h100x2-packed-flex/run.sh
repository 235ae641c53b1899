#!/usr/bin/env bash
# Device call 73 (2 GPUs, one stream): packed rows (documents of ~1024 tokens, bench.document_len) through sdpa's
# dense mask against flex block masks (model.packed_attention=mask / auto), Qwen2-1.5B seq 4096 GB 8 compiled no AC,
# dp_shard=2 micro-batch 4 and tp=2 micro-batch 8; rows of one document each as the reference.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w73; rm -rf $W; mkdir -p $W; END=575
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export WARMUP=2 STEPS=5
DOCS="--bench.document_len=1024"
row a dp2-mask qwen2-1.5b 4096 1 8 sw-none-compile-mb4 110 "$DOCS --model.packed_attention=mask"
row a dp2-flex qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 "$DOCS"
row a tp2-mask qwen2-1.5b 4096 2 8 sw-none-compile-mb8 110 "$DOCS --model.packed_attention=mask"
row a tp2-flex qwen2-1.5b 4096 2 8 sw-none-compile-mb8 120 "$DOCS"
row a dp2-one-doc qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
row a tp2-one-doc qwen2-1.5b 4096 2 8 sw-none-compile-mb8 100 ""
grep -h "recompil\|graph break" $W/*/*.log | sort | uniq -c | head
summarize $OUT
cp .carry/run73.sh $OUT/run.sh
