#!/usr/bin/env bash
# Device call 37 (4 GPUs of one host; rows of one stream are comparable). Qwen2-1.5B shapes, seq 4096, GB 8, fp32
# master weights, compiled, no AC, micro-batch 4. parallel.tp_overlap: none (as main was), reorder (collectives
# scheduled beside compute), halves (+ two halves of each micro-batch in one graph); dp_shard=2 for the ratio.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w37; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; from torch._inductor.choices import InductorChoices as C; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version(), "can_fuse_horizontal" in vars(C))'
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
  row A a-tp2-none qwen2-1.5b 4096 2 8 sw-none-compile-mb4 130 "--parallel.tp_overlap=none"
  row A a-tp2-halves qwen2-1.5b 4096 2 8 sw-none-compile-mb4 130 "--parallel.tp_overlap=halves"
  row A a-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 130 ""
  row A a-tp2-reorder qwen2-1.5b 4096 2 8 sw-none-compile-mb4 130 "--parallel.tp_overlap=reorder"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3 WARMUP=2 STEPS=6 PROFILE=true
  row B b-tp2-halves qwen2-1.5b 4096 2 8 sw-none-compile-mb4 140 "--parallel.tp_overlap=halves"
  row B b-tp2-none qwen2-1.5b 4096 2 8 sw-none-compile-mb4 140 "--parallel.tp_overlap=none"
  row B b-tp2-reorder qwen2-1.5b 4096 2 8 sw-none-compile-mb4 140 "--parallel.tp_overlap=reorder"
  PROFILE=false row B b-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 ""
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
for v in halves none reorder; do cp $W/b-tp2-$v/sw-none-compile-mb4/profile-ops.txt $OUT/profile-ops-tp2-$v.txt 2>/dev/null; done

summarize $OUT
