#!/usr/bin/env bash
# Throughput sweep on the GPUs of this machine: shardwise bench variants, the design-note recipe, transformers tp_plan
# and TorchTitan (titan-* rows mirror the sw-* rows of the same suffix: same shapes, layout, batch, AC and compile).
# Usage: bash benchmarks/gpu_sweep.sh PRESET SEQ_LEN [NAME ...]   (from the repository root; results in $OUT or runs/sweep)
# The rows run the src of the folder it is run from (first on PYTHONPATH); the table's last column names that code.
# Each NAME is one row of the tables below; without names, all rows run. PRESET is any shardwise preset, llama3-8b
# included: its fp32 weights, gradients and AdamW moments take about 60 GiB per GPU on two GPUs, so on 80 GB cards
# run its full-AC, micro-batch-1 rows (sw-full-*, titan-full-*).
# TP (default 1) and GB (sequences per optimizer step, default 4) apply to every row; WARMUP and STEPS too. EXTRA adds
# arguments to the sw-* rows, after the row's own (so they override them), TITAN_EXTRA to the titan-* rows
# (e.g. EXTRA=--model.dtype=bfloat16 TITAN_EXTRA="--dtype bfloat16").
set -uo pipefail
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
PRESET=$1 SEQ=$2; shift 2
OUT=${OUT:-runs/sweep}; mkdir -p "$OUT"
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
TP=${TP:-1}; DP=$(( NGPU / TP )); GB=${GB:-4}; WARMUP=${WARMUP:-2}; STEPS=${STEPS:-6}
COMMON="--model.preset=$PRESET --parallel.tp=$TP --train.seq_len=$SEQ --bench.warmup=$WARMUP --bench.steps=$STEPS"
COMMON+=" --bench.profile=${PROFILE:-false}"  # PROFILE=true: one more step profiled (bench.profile)
declare -A ROWS=(
  [sw-full-eager]="--train.activation_checkpointing=full --train.compile=false --train.micro_batch_size=1"
  [sw-full-eager-graphs]="--train.activation_checkpointing=full --train.compile=false --train.micro_batch_size=1 --train.cudagraphs=true"
  [sw-full-compile]="--train.activation_checkpointing=full --train.compile=true --train.micro_batch_size=1"
  [sw-full-compile-mb8]="--train.activation_checkpointing=full --train.compile=true --train.micro_batch_size=8"
  [sw-sel-compile]="--train.activation_checkpointing=selective --train.compile=true --train.micro_batch_size=1"
  [sw-none-eager]="--train.activation_checkpointing=none --train.compile=false --train.micro_batch_size=1"
  [sw-none-compile]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=1"
  [sw-none-compile-mb2]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=2"
  [sw-none-compile-mb4]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=4"
  [sw-none-compile-mb8]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=8"
  [sw-none-compile-nofused]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=1 --train.fused_optimizer=false"
  [sw-none-compile-mb2-keep]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=2 --parallel.reshard_after_forward=false"
  [sw-none-compile-mb2-asynctp]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=2 --parallel.async_tp=true"
  [sw-none-compile-mb4-asynctp]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=4 --parallel.async_tp=true"
  [sw-none-compile-mb8-asynctp]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=8 --parallel.async_tp=true"
  [sw-none-compile-mb2-seqattn]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=2 --parallel.tp_attention=sequences"
  [sw-none-compile-mb8-seqattn]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=8 --parallel.tp_attention=sequences"
  [sw-none-compile-mb8-seqattn-asynctp]="--train.activation_checkpointing=none --train.compile=true --train.micro_batch_size=8 --parallel.tp_attention=sequences --parallel.async_tp=true"
  [sw-full-compile-asynctp]="--train.activation_checkpointing=full --train.compile=true --train.micro_batch_size=1 --parallel.async_tp=true"
)
TIMING="--warmup $WARMUP --steps $STEPS"  # the baselines' uncounted and timed steps (recipe, transformers, TorchTitan), as the sw-* rows'
TITAN="--shapes $PRESET --tp $TP --seq-len $SEQ --global-batch $GB $TIMING ${TITAN_EXTRA:-}"
declare -A TITAN_ROWS=(
  [titan-full-eager]="--ac full --local-batch 1"
  [titan-full-compile]="--ac full --compile --local-batch 1"
  [titan-sel-compile]="--ac selective --compile --local-batch 1"
  [titan-none-eager]="--ac none --local-batch 1"
  [titan-none-compile]="--ac none --compile --local-batch 1"
  [titan-none-compile-mb2]="--ac none --compile --local-batch 2"
  [titan-none-compile-mb4]="--ac none --compile --local-batch 4"
  [titan-none-compile-mb8]="--ac none --compile --local-batch 8"
  [titan-none-compile-mb2-keep]="--ac none --compile --local-batch 2 --titan-arg=--parallelism.fsdp_reshard_after_forward=never"
  [titan-none-compile-mb2-asynctp]="--ac none --compile --local-batch 2 --async-tp"
  [titan-none-compile-mb4-asynctp]="--ac none --compile --local-batch 4 --async-tp"
  [titan-none-compile-mb8-asynctp]="--ac none --compile --local-batch 8 --async-tp"
  [titan-full-compile-asynctp]="--ac full --compile --local-batch 1 --async-tp"
)
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(recipe-eager recipe-compile hf-tp-plan-ac hf-tp-plan "${!ROWS[@]}" "${!TITAN_ROWS[@]}")
for name in "${names[@]}"; do
  echo "=== $name"
  case $name in
    recipe-eager) torchrun --standalone --nproc-per-node=$NGPU benchmarks/recipe_baseline.py --preset $PRESET --tp $TP \
        --seq-len $SEQ --accum $(( GB / DP )) $TIMING --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 ;;
    recipe-compile) torchrun --standalone --nproc-per-node=$NGPU benchmarks/recipe_baseline.py --preset $PRESET --tp $TP \
        --seq-len $SEQ --accum $(( GB / DP )) --compile $TIMING --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 ;;
    hf-tp-plan-ac) torchrun --standalone --nproc-per-node=$NGPU benchmarks/hf_tp_plan_baseline.py --preset $PRESET \
        --seq-len $SEQ --accum $GB --ac $TIMING --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 ;;
    hf-tp-plan) torchrun --standalone --nproc-per-node=$NGPU benchmarks/hf_tp_plan_baseline.py --preset $PRESET \
        --seq-len $SEQ --accum $GB $TIMING --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 ;;
    titan-*) python3 benchmarks/torchtitan_baseline.py $TITAN ${TITAN_ROWS[$name]} --out "$OUT/$name.json" \
        > "$OUT/$name.log" 2>&1 ;;
    *) python3 -m shardwise.cli bench $COMMON ${ROWS[$name]} --train.global_batch_size=$GB \
        --bench.out="$OUT/$name.json" --output.dir="$OUT/$name" ${EXTRA:-} > "$OUT/$name.log" 2>&1 ;;
  esac
  echo "exit $?"; [ -f "$OUT/$name.json" ] || tail -n 5 "$OUT/$name.log"
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
rows = [json.loads(p.read_text()) | {"name": p.stem} for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))]
na = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # MFU and memory are null on CPU
print(f"{'name':31} {'step s':>7} {'tok/s/dev':>10} {'MFU':>6} {'GiB':>6} {'GPU busy':>8} {'exposed comm ms':>15} code")
for r in rows:
    p = r.get("profile") or {}
    busy = f"{p['gpu_busy_ms'] / p['wall_ms']:8.0%}" if "gpu_busy_ms" in p else f"{'':8}"
    comm = f"{p['exposed_comm_ms']:15.1f}" if "exposed_comm_ms" in p else f"{'':15}"
    code = (r.get("versions") or {}).get("shardwise", "")  # shardwise rows: which tree ran (bench.source_digest)
    print(f"{r['name']:31} {r['step_time_s_median']:7.3f} {r['tokens_per_s_per_device']:10.0f} "
          f"{na(r['mfu'], '.1%'):>6} {na(r['peak_mem_gib'], '.1f'):>6} {busy} {comm} {code}")
PY
