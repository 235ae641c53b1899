#!/usr/bin/env bash
# Device call 78 (2 GPUs, one stream): Llama-3-8B shapes, seq 4096, GB 8, pure bf16, compiled, no checkpointing (the
# settings of session 15's 8B rows), packed rows of documents of ~1024 tokens (bench.document_len) through sdpa's dense
# mask against flex block masks (model.packed_attention=mask / auto): tp=2 micro-batch 2, then dp_shard=2 micro-batch 1.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w78; rm -rf $W; mkdir -p $W; END=555
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export WARMUP=2 STEPS=3
DOCS="--bench.document_len=1024 --model.dtype=bfloat16"
row a 8b-tp2-mask llama3-8b 4096 2 8 sw-none-compile-mb2 135 "$DOCS --model.packed_attention=mask"
row a 8b-tp2-flex llama3-8b 4096 2 8 sw-none-compile-mb2 135 "$DOCS"
row a 8b-dp2-mask llama3-8b 4096 1 8 sw-none-compile 135 "$DOCS --model.packed_attention=mask"
row a 8b-dp2-flex llama3-8b 4096 1 8 sw-none-compile 135 "$DOCS"
summarize $OUT
cp .carry/run78.sh $OUT/run.sh
