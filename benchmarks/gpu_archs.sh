#!/usr/bin/env bash
# Every architecture's plan file on the GPUs of this machine; prints a PASS/FAIL table last, exits 1 on any FAIL.
#   bash benchmarks/gpu_archs.sh               # from the repository root, on 2 or more GPUs
#   SMOKE_CPU=1 bash benchmarks/gpu_archs.sh   # the same on CPU gloo processes, tiny shapes, eager
# The GPU smoke (gpu_smoke.sh) proves Qwen2's plan; this does the others' (benchmarks/smoke_checks.py ARCH_PRESETS).
# For each model_type, a random-init bf16 folder written by save_pretrained (8 layers, hidden 512, 8 query and 4 KV
# heads, what the architecture adds sized to that: smoke_checks.arch_spec), then 50 bf16 steps on packed rows of the
# standard-library corpus (seq 1024, 8 rows a step, lr 1e-3):
#   <model_type>-1    one GPU, eager blocks, sdpa's dense document mask: the reference
#   <model_type>-tp2  tp=2 with the GPUs' defaults: compiled blocks (fullgraph, TP collectives inside), packed rows
#                     through flex block masks (sdpa architectures)
#   <model_type>-dp2  dp_shard=2 (FSDP alone), the same defaults
#   <model_type>-dp2xtp2  dp_shard=2 x tp=2 (FSDP over TP), where there are 4 GPUs
#   <model_type>-twin one GPU as the reference but micro-batch 2: the same sums in another order (mixtures of experts)
# ARCH_LAYOUTS="tp2 dp2 ..." picks the layouts (the reference always runs); ARCH_NAMES="olmoe mixtral ..." the
# architectures (default: all); ARCH_FLAGS="--train.router_aux_loss=0.1" adds flags to every run; the runs share the
# GPUs, side by side.
# Mixtures of experts run all of theirs in fp32, eager (smoke_checks.MOE_FLAGS says why).
# Checks: each loss curve within 2% of its reference at every step (smoke_checks.PARITY_TOL); a mixture of experts'
# within fp32's 1e-4 over its first 10 steps, with the rest of the curve reported beside its twin's, which shows how
# far rounding alone carries it once routing ties break another way (smoke_checks.MOE_STEPS); and shardwise
# plan's memory total above every run's measured peak. $OUT (default runs/archs) receives archs.json and archs.log;
# runs and model folders go to $SMOKE_WORK (default runs/archs-work, emptied first); RUN_TIMEOUT=S ends a run after S s.
set -uo pipefail
OUT=${OUT:-runs/archs} WORK=${SMOKE_WORK:-runs/archs-work}
source benchmarks/smoke_env.sh

if [ "$CPU" = 1 ]; then
  export CUDA_VISIBLE_DEVICES=
  NDEV=2 SIZE=--cpu
  RUN=(--train.steps=10 --train.seq_len=64 --train.lr=3e-3 --train.warmup_steps=2 --data.max_bytes=200000)
else
  NDEV=$(python3 -c 'import torch; print(torch.cuda.device_count())') SIZE=
  [ "$NDEV" -ge 2 ] || { echo "needs 2 GPUs; SMOKE_CPU=1 runs the dry-run on CPU"; exit 2; }
  RUN=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000)
fi
RUN+=(--train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 --train.activation_checkpointing=none
      --parallel.dp_shard=1 --parallel.cp=1 ${ARCH_FLAGS:-})
declare -A EXTRA  # per architecture, what its runs add (smoke_checks.arch_flags: Gemma 2's eager attention, MoE fp32)
ALL= ARCHS= MOE=
while read -r arch kind flags; do
  ALL+="$arch "
  [[ " ${ARCH_NAMES:-$arch} " == *" $arch "* ]] || continue
  ARCHS+="$arch " EXTRA[$arch]=$flags
  [ "$kind" = moe ] && MOE+="$arch "
done < <("${CHECKS[@]}" archs)
for arch in ${ARCH_NAMES:-}; do
  [[ " $ALL" == *" $arch "* ]] || { echo "ARCH_NAMES: no architecture $arch; these are: $ALL"; exit 2; }
done

train() {  # NAME GPUS ARGS...: shardwise train seeing only GPUS (CPU: the processes ARGS ask for), logs/NAME.log
  local name=$1 gpus=$2; shift 2
  local arch=${name%-*} cmd=(python3 -m shardwise.cli train --output.dir="$WORK/runs/$name" --output.progress=false)
  cmd+=(--model.path="$WORK/$arch" --data.cache_dir="$WORK/cache/$name" "${RUN[@]}" "$@" ${EXTRA[$arch]})
  [ -n "${RUN_TIMEOUT:-}" ] && cmd=(timeout "$RUN_TIMEOUT" "${cmd[@]}")  # a run that hangs is one FAIL, not all
  step "$name" "$gpus" "${cmd[@]}"
  rm -rf "$WORK/runs/$name/checkpoints"  # the always-saved final checkpoint; nothing reads it
}
REF="--parallel.tp=1 --train.compile=false --model.packed_attention=mask"
declare -A FLAGS=([1]="$REF" [twin]="$REF --train.micro_batch_size=2" [tp2]="--parallel.tp=2"
                  [dp2]="--parallel.tp=1 --parallel.dp_shard=2" [dp2xtp2]="--parallel.tp=2 --parallel.dp_shard=2")
declare -A WIDTH=([1]=1 [twin]=1 [tp2]=2 [dp2]=2 [dp2xtp2]=4)
LAYOUTS=${ARCH_LAYOUTS:-tp2 dp2$([ "$NDEV" -ge 4 ] && echo " dp2xtp2")}
queue() {  # KIND GPUS ARCH...: one architecture after another on GPUS
  local kind=$1 gpus=$2 arch; shift 2
  for arch in "$@"; do train "$arch-$kind" "$gpus" ${FLAGS[$kind]}; done
}
spread() {  # KIND WIDTH ARCH...: the architectures dealt round-robin over one queue per GPU (CPU: one queue), queue
  # q on WIDTH GPUs from GPU q * WIDTH round the machine; the queues run side by side, sharing GPUs (nothing is timed)
  local kind=$1 width=$2 queues=$(( CPU == 1 ? 1 : NDEV )) i=0 q g arch gpus
  local -a lists
  shift 2
  for arch in "$@"; do lists[i % queues]+="$arch "; i=$((i + 1)); done
  for ((q = 0; q < queues; q++)); do
    gpus=; for ((g = 0; g < width; g++)); do gpus+="${gpus:+,}$(( (q * width + g) % NDEV ))"; done
    queue "$kind" "$gpus" ${lists[q]:-} &
  done
  wait
}

"${CHECKS[@]}" prepare-archs "$WORK" $SIZE > "$WORK/logs/prepare.log" 2>&1 || cat "$WORK/logs/prepare.log"
# The twin's smaller micro-batch changes a loss taken per micro-batch (the routers', train.router_aux_loss) instead of
# only its order of sums: with that among ARCH_FLAGS no twin runs.
TWINS=$MOE; [[ "${ARCH_FLAGS:-}" == *router_aux_loss* ]] && TWINS=
for kind in 1 twin $LAYOUTS; do
  [ "$kind" = twin ] && names=$TWINS || names=$ARCHS
  if [ "$CPU" = 1 ]; then spread "$kind" "${WIDTH[$kind]}" $names; else spread "$kind" "${WIDTH[$kind]}" $names & fi
done
wait
echo "runs took $SECONDS s; plans and report:"
"${CHECKS[@]}" report-archs "$WORK" "$OUT" --seconds "$SECONDS"
