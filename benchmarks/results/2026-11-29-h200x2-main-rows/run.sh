#!/usr/bin/env bash
# Device call 180 (2 GPUs), session 41: issue 9's rows on main as it stands (after sessions 39-40: the optimizer
# tail's one tp.local_tensor, the routers' loss, forward_backward's reductions). Qwen2-1.5B shapes, seq 4096, GB 8,
# fp32 master weights: dp_shard=2 compiled micro-batch 4, tp=2 compiled micro-batch 8 (per sequence, auto), the same
# with async TP, tp=2 eager full AC micro-batch 1 with CUDA graphs, then dp_shard=2 and tp=2 again (drift within the
# call). Warmup 2, median of 10 (the eager row: 6).
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
W=/tmp/w180; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
export WARMUP=2 STEPS=10
git log -1 --format='%h %s' 2>/dev/null | cut -c1-80
python3 -c "import torch, transformers, sys; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.get_device_name(0), torch.cuda.device_count())"
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
row a tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb8 100 ""
row a tp2-async qwen2-1.5b 4096 2 8 sw-none-compile-mb8-asynctp 100 ""
STEPS=6 row a tp2-eager qwen2-1.5b 4096 2 8 sw-full-eager-graphs 100 ""
row a dp2-again qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
row a tp2-again qwen2-1.5b 4096 2 8 sw-none-compile-mb8 100 ""
grep -h "tp_attention=auto\|async_tp\|cudagraphs" $W/*/*.log | sort | uniq -c | head
summarize $OUT | tee $OUT/summary.txt
for f in $W/*/*.json; do python3 -c "import json,sys; r=json.load(open(sys.argv[1])); 'versions' in r and print(sys.argv[1], r['versions'].get('shardwise'))" $f; done | tee -a $OUT/summary.txt
cp .carry/run180.sh "$OUT/run.sh"
