#!/usr/bin/env bash
# Device call 32 (4 GPUs of one host). Rows of one stream are comparable.
# A (GPUs 0,1): Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master, compiled, no AC, micro-batch 4: dp_shard=2, tp=2,
#   tp=2 with NCCL given 32 CTAs, tp=2 without sequence parallelism (all-reduce).
# B (GPUs 2,3): NCCL bandwidth at the TP collectives' sizes (default, 32 CTAs, 8 CTAs, LL128) and peer copies through
#   symmetric memory; then the graph rows' memory (peak_reserved_gib against the plan): 1.5B tp=2 eager full AC
#   micro-batch 1 with graphs, the same without AC, Llama-3-8B shapes bf16 tp=2 full AC with graphs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w32; rm -rf $W; mkdir -p $W; END=540
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
bw() {  # TAG ENV...
  local tag=$1; shift
  env "$@" BW_OUT=$OUT/nccl-bw.jsonl timeout 90 torchrun --standalone --nproc-per-node=2 .carry/nccl_bw.py $tag 2>&1 | grep -v Warning | tail -14
}
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
  row A dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 ""
  row A tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
  NCCL_MIN_CTAS=32 NCCL_MAX_CTAS=32 row A tp2-ctas32 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
  row A tp2-nosp qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 "--parallel.sequence_parallel=false"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3
  bw default; bw ctas32 NCCL_MIN_CTAS=32 NCCL_MAX_CTAS=32; bw ctas8 NCCL_MAX_CTAS=8; bw ll128 NCCL_PROTO=LL128
  WARMUP=2 STEPS=4 row B graphs-full qwen2-1.5b 4096 2 8 sw-full-eager-graphs 110 ""
  WARMUP=2 STEPS=4 row B graphs-none qwen2-1.5b 4096 2 8 sw-none-eager 110 "--train.cudagraphs=true"
  WARMUP=1 STEPS=2 row B graphs-8b llama3-8b 4096 2 8 sw-full-eager-graphs 150 "--model.dtype=bfloat16"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
grep -h "memory\|peak" $W/graphs-*/*.log | head -20
python3 - $W <<'PY'
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).glob("graphs-*/*.json")):
    r = json.loads(p.read_text()); print(p.parent.name, "peak_mem_gib", round(r["peak_mem_gib"], 2), "peak_reserved_gib", r.get("peak_reserved_gib"))
PY
summarize $OUT
