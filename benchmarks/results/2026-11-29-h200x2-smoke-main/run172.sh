#!/usr/bin/env bash
# Device call 172 (2 GPUs), session 39, on calls 170-171's warm machine: gpu_smoke.sh's last two parity runs, which
# call 170's limit stopped before they started (tp=2 with attention per sequence, cp=2), with the commands the script
# gives them (parity_run's flags: the nosp run's command with its last flag swapped), then the report.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
W=/tmp/smoke-work t0=$SECONDS
read -r -a base < <(head -n 1 $W/logs/parity-tp2-nosp.log | sed 's/^\$ //; s/ --parallel.sequence_parallel=false$//')
for v in "tp2-seqattn:--parallel.tp=2 --parallel.cp=1 --parallel.tp_attention=sequences" "cp2:--parallel.tp=1 --parallel.cp=2"; do
  name=parity-${v%%:*}
  cmd=("${base[@]/parity-tp2-nosp/$name}")
  cmd=("${cmd[@]/--parallel.tp=2/}"); cmd=("${cmd[@]/--parallel.cp=1/}")
  cmd=(${cmd[@]} ${v#*:})
  s=$SECONDS; echo "\$ ${cmd[*]}" > $W/logs/$name.log
  CUDA_VISIBLE_DEVICES=0,1 "${cmd[@]}" >> $W/logs/$name.log 2>&1; rc=$?
  echo "exit $rc after $((SECONDS - s)) s" | tee -a $W/logs/$name.log | sed "s/^/$name: /"
  printf '%s\t%s\t%s\n' $name $rc $((SECONDS - s)) >> $W/steps.tsv
  rm -rf $W/runs/$name/checkpoints
done
python3 benchmarks/smoke_checks.py report $W $OUT --seconds $((680 + SECONDS - t0)) > $OUT/report.txt 2>&1; echo "report exit $?"
tail -24 $OUT/report.txt; cp .carry/run172.sh $OUT/run172.sh; cp $W/steps.tsv $OUT/
