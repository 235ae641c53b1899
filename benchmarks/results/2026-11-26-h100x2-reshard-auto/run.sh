#!/usr/bin/env bash
# Device call 53 (2 GPUs; rows of one stream are comparable): parallel.reshard_after_forward=auto, the new default
# (working tree), against =true (FSDP's default, and shardwise's before). Qwen2-1.5B shapes dp_shard=2 (seq 4096,
# GB 8, fp32 master weights, compiled, no AC, micro-batch 4), interleaved twice; Llama-3-8B shapes dp_shard=2
# (pure bf16, compiled, no AC, micro-batch 1) with the defaults of both shardwise and TorchTitan, and =true.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-titan/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w53; rm -rf $W; mkdir -p $W; END=${END:-560}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
R="--parallel.reshard_after_forward=true"
row a dp2-auto qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
row a dp2-reshard qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 "$R"
row a dp2-auto-2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
row a dp2-reshard-2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 "$R"
export WARMUP=2 STEPS=3 TITAN_EXTRA="--dtype bfloat16"
row a 8b-dp2-auto llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16"
row a 8b-dp2-titan llama3-8b 4096 1 8 titan-none-compile 120 ""
row a 8b-dp2-reshard llama3-8b 4096 1 8 sw-none-compile 100 "--model.dtype=bfloat16 $R"
grep -h "reshard_after_forward=auto" $W/*/*.log | sort | uniq -c
cp .carry/run53.sh $OUT/run.sh
summarize $OUT
python3 -c "import json; d=json.load(open('$OUT/sweep.json')); [print(k, v.get('reshard_after_forward')) for k, v in sorted(d.items())]"
