#!/usr/bin/env bash
# Device call 33 (4 GPUs of one host). Rows of one stream are comparable.
# B (GPUs 2,3) first: NCCL bandwidth at the TP collectives' sizes under environment settings (registered buffers,
#   copy-engine P2P, more CTAs, larger buffers) and with NCCL's registered windows; writes the fastest setting for
#   the 1.5B all-gather + reduce-scatter to $W/pick. Then Llama-3-8B shapes bf16 tp=2 no AC micro-batch 2, compiled,
#   without and with the picked setting.
# A (GPUs 0,1): Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master, compiled, no AC, micro-batch 4: dp_shard=2, tp=2,
#   then (once B has picked) both again with the picked setting.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w33; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.nccl.version())'
declare -A VARIANTS=(
  [default]=""
  [window]="BW_WINDOW=1"
  [reghook]="TORCH_NCCL_USE_TENSOR_REGISTER_ALLOCATOR_HOOK=1"
  [cememcpy]="NCCL_P2P_USE_CUDA_MEMCPY=1"
  [ctas64]="NCCL_MIN_CTAS=64 NCCL_MAX_CTAS=64"
  [buff16m]="NCCL_BUFFSIZE=16777216"
  [ctas32-buff16m]="NCCL_MIN_CTAS=32 NCCL_MAX_CTAS=32 NCCL_BUFFSIZE=16777216"
  [nthreads256]="NCCL_NTHREADS=256"
)
bw() {  # TAG
  env ${VARIANTS[$1]} BW_OUT=$OUT/nccl-bw.jsonl timeout 90 torchrun --standalone --nproc-per-node=2 .carry/nccl_bw.py $1 2>&1 \
    | grep -v "Warning\|torch/distributed/run.py" | tail -20
}
pick() {
  python3 - $OUT/nccl-bw.jsonl > $W/pick <<'PY'
import json, sys
runs = {r["tag"]: r["us"] for r in map(json.loads, open(sys.argv[1]))}
cost = {t: u["1.5b-mb4 all_gather"] + u["1.5b-mb4 reduce_scatter"] for t, u in runs.items() if t != "window" and "1.5b-mb4 all_gather" in u}
best = min((t for t in cost if t != "default"), key=cost.get)
print(best)
print(f"picked {best}: {cost[best]:.1f} us against default {cost['default']:.1f} us", file=sys.stderr)
PY
}
stream_a() {
  export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
  row A dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 ""
  row A tp2 qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ""
  while [ ! -s $W/pick ]; do sleep 2; done; local best=$(cat $W/pick); echo "A: picked $best: ${VARIANTS[$best]}"
  env ${VARIANTS[$best]} bash -c "source benchmarks/stream_rows.sh; T0=$((T0 - SECONDS)); W=$W END=$END; \
    row A dp2-$best qwen2-1.5b 4096 1 8 sw-none-compile-mb4 120 ''; row A tp2-$best qwen2-1.5b 4096 2 8 sw-none-compile-mb4 120 ''"
}
stream_b() {
  export CUDA_VISIBLE_DEVICES=2,3
  for v in default window reghook cememcpy ctas64 buff16m ctas32-buff16m nthreads256; do bw $v; done
  pick; local best=$(cat $W/pick); echo "B: picked $best: ${VARIANTS[$best]}"
  WARMUP=1 STEPS=3 row B tp2-8b llama3-8b 4096 2 8 sw-none-compile-mb2 170 "--model.dtype=bfloat16"
  WARMUP=1 STEPS=3 env ${VARIANTS[$best]} bash -c "source benchmarks/stream_rows.sh; T0=$((T0 - SECONDS)); W=$W END=$END; \
    row B tp2-8b-$best llama3-8b 4096 2 8 sw-none-compile-mb2 170 --model.dtype=bfloat16"
}
stream_a > $W/A.out 2>&1 &
stream_b > $W/B.out 2>&1 &
wait
cat $W/A.out $W/B.out
summarize $OUT
