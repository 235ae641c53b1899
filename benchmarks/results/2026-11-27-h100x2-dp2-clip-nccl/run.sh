#!/usr/bin/env bash
# Device call 76 (2 GPUs, one stream): Qwen2-1.5B dp_shard=2 seq 4096 GB 8 micro-batch 4 compiled no AC (the issue's
# dp_shard=2 row): 80b8dbc (.carry/base: clipping as its own foreach pass) against this tree (clipping folded into
# fused AdamW's grad_scale), then FSDP's NCCL kernels given fewer SMs (NCCL_MAX_CTAS) or the Simple protocol, each
# with this tree; base and this tree again at the end (the spread within the call).
# The tree that ran was 80b8dbc + experiment.patch (in this folder; not committed: it gave nothing measurable).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w76; rm -rf $W; mkdir -p $W; END=585
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c "
import torch.distributed as d
o = d.ProcessGroupNCCL.Options(); print('NCCL options config:', [a for a in dir(o.config) if not a.startswith('_')])" 2>&1 | tail -1
export WARMUP=3 STEPS=10
R=sw-none-compile-mb4
ROOT=.carry/base NCCL_DEBUG=INFO row a base qwen2-1.5b 4096 1 8 $R 95 ""
grep -h "nChannels\|NCCL version\|NCCL_" $W/base/*.log | sed 's/^.*NCCL INFO //' | sort | uniq -c | sort -rn | head -8
row a fold qwen2-1.5b 4096 1 8 $R 95 ""
NCCL_MAX_CTAS=8 row a fold-ctas8 qwen2-1.5b 4096 1 8 $R 95 ""
ROOT=.carry/base row a base-again qwen2-1.5b 4096 1 8 $R 95 ""
row a fold-again qwen2-1.5b 4096 1 8 $R 95 ""
NCCL_MAX_CTAS=4 row a fold-ctas4 qwen2-1.5b 4096 1 8 $R 95 ""
NCCL_PROTO=Simple row a fold-simple qwen2-1.5b 4096 1 8 $R 95 ""
summarize $OUT
cp .carry/run76.sh $OUT/run.sh
