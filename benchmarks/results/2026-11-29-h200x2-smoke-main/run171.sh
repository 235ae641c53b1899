#!/usr/bin/env bash
# Device call 171 (2 GPUs), session 39, on call 170's warm machine: every smoke run that call 170 started and did not
# finish (a log without a line in steps.tsv) is run again with the command its log begins with, as gpu_smoke.sh's
# `step` runs it (1-GPU runs on GPU 0, the others on both), then the report.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
W=/tmp/smoke-work t0=$SECONDS
ls $W/runs > /dev/null || { echo "no work folder: the machine is not call 170's"; exit 2; }
for log in $W/logs/*.log; do
  name=$(basename $log .log)
  case $name in install|versions) continue;; esac
  grep -q "^$name	" $W/steps.tsv && continue
  read -r -a cmd < <(head -n 1 $log | sed 's/^\$ //')
  gpus=0,1; [[ $name == parity-1* || $name == export* ]] && gpus=0
  echo "rerun $name on $gpus: ${cmd[*]}"
  rm -rf $W/runs/$name; s=$SECONDS; echo "\$ ${cmd[*]}" > $log
  CUDA_VISIBLE_DEVICES=$gpus "${cmd[@]}" >> $log 2>&1; rc=$?
  echo "exit $rc after $((SECONDS - s)) s" | tee -a $log | sed "s/^/$name: /"
  printf '%s\t%s\t%s\n' $name $rc $((SECONDS - s)) >> $W/steps.tsv
  [[ $name == parity-* ]] && rm -rf $W/runs/$name/checkpoints
done
python3 benchmarks/smoke_checks.py report $W $OUT --seconds $((580 + SECONDS - t0)) > $OUT/report.txt 2>&1; echo "report exit $?"
tail -30 $OUT/report.txt; cp .carry/run171.sh $OUT/run171.sh; cp $W/steps.tsv $OUT/
