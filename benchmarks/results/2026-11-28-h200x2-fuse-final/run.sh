#!/usr/bin/env bash
# Device call 118 (2 GPUs, the session's last device time), session 28: the pass's final form (a merged forward matmul
# also read as reshape -> mm -> reshape), async TP on and off, the pass's AG/RS patterns logged. Call 117: as call 116 with a merged input gradient read as reshape -> mm -> reshape
# (concatenated before the flatten), so async TP can pipeline its reduce-scatter; tp=2 rows only. Call 116 was as call 115 with column slices of a merged matmul copied (the saved v no
# longer keeps q and k alive), tiny-llama for the parity (mm, not addmm), the AG/RS patterns logged (.carry/xdiag).
# Call 115's header: the working tree with shardwise.fuse (matmuls sharing an operand merged by an
# inductor pass) switched by SHARDWISE_X_FUSE_BELOW (experiment knob): "off" = 0 (no pass, as main), "on" = 2048
# (the pass's default: q/k/v merged, gate/up not), "all" = 100000 (gate/up too). Two 2-GPU streams, ratios within a
# stream. Qwen2-1.5B shapes, seq 4096, GB 8, fp32 master weights, compiled, no checkpointing: tp=2 micro-batch 8
# plain and async TP, dp_shard=2 micro-batch 4; Llama-3-8B tp=2 bf16 micro-batch 2. Numerics: tiny-qwen2 (q/k/v
# biases: addmm) at tp=2, 30 fp32 compiled steps, off against on; the async-TP pass's decisions logged in the
# async "on" row (.carry/xasync, X_ASYNC_MIN=1: every candidate fused, as without it).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) NEW=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
T0=$SECONDS END=575
declare -A BELOW=([off]=0 [on]=2048 [all]=100000)
row() {  # STREAM GPUS PRESET ROW TP MODE FUSE EXTRA
  local s=$1 gpus=$2 preset=$3 name=$4 tp=$5 mode=$6 fuse=$7 extra=$8 t=110 path=/tmp/site
  [ "$mode" = async ] && extra+=" --parallel.async_tp=true"
  [ "$mode" = async ] && [ "$fuse" = on ] && path+=:$NEW/.carry/xdiag
  local d=$s-$preset-tp$tp-$mode-$fuse
  [ $((SECONDS - T0 + t)) -gt $END ] && { echo "$d: skipped, no time left" | tee -a $OUT/rows.txt; return; }
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$path X_ASYNC_MIN=1 X_DUMP=1 SHARDWISE_X_FUSE_BELOW=${BELOW[$fuse]} \
    TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$s-$mode-$fuse-$tp OUT=$OUT/$d TP=$tp GB=8 WARMUP=2 STEPS=4 EXTRA="$extra" \
    timeout -k 5 $t bash benchmarks/gpu_sweep.sh $preset 4096 $name > $OUT/$d.txt 2>&1
  echo "$d: $(tail -n 1 $OUT/$d.txt) [done at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
parity() {  # GPUS FUSE
  local gpus=$1 fuse=$2
  CUDA_VISIBLE_DEVICES=$gpus PYTHONPATH=$NEW/src:/tmp/site SHARDWISE_X_FUSE_BELOW=${BELOW[$fuse]} \
    TORCHINDUCTOR_CACHE_DIR=/tmp/ic-par-$fuse timeout 100 torchrun --standalone --nproc-per-node=2 -m shardwise.cli \
    train --model.preset=tiny-llama --train.seq_len=1024 --train.micro_batch_size=2 --train.global_batch_size=8 \
    --train.steps=30 --parallel.tp=2 --train.dtype=float32 --train.eval_every=0 --output.dir=/tmp/par-$fuse \
    --output.progress=false > $OUT/parity-$fuse.log 2>&1
  echo "parity $fuse exit $? [at $((SECONDS - T0)) s]" | tee -a $OUT/rows.txt
}
Q=qwen2-1.5b
row A 0,1 $Q sw-none-compile-mb8 2 async on ""; row A 0,1 $Q sw-none-compile-mb8 2 async off ""
grep -rhE "x-async|x-dump\]   (AG|RS)" $OUT/A-$Q-tp2-async-on* 2>/dev/null | sort | uniq -c | tee -a $OUT/rows.txt
cp .carry/run118.sh $OUT/run.sh
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls -d */) 2>/dev/null
echo "=== rows"; cat $OUT/rows.txt
