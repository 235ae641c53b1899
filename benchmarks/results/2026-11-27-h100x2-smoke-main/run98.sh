#!/usr/bin/env bash
# Device call 98 (2 GPUs), session 23, same warm machine as call 97: call 97's smoke ran out its 570 s during its last
# run (parity-cp2); this reruns that run exactly as gpu_smoke.sh's `parity cp2 1 1 2` does, then the report, on call
# 97's work folder.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
W=/tmp/smoke-work t0=$SECONDS
ls $W/runs > /dev/null || { echo "no work folder: the machine is not call 97's"; exit 2; }
sed -i '/^parity-cp2\t/d' $W/steps.tsv
cmd=(python3 -m shardwise.cli train --output.dir=$W/runs/parity-cp2 --output.progress=false --train.steps=50
     --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000 --model.path=$W/parity-model
     --train.global_batch_size=8 --train.eval_every=0 --train.compile=false --train.activation_checkpointing=none
     --parallel.dp_shard=1 --parallel.tp=1 --parallel.cp=2 --train.micro_batch_size=4)
rm -rf $W/runs/parity-cp2; echo "\$ ${cmd[*]}" > $W/logs/parity-cp2.log
CUDA_VISIBLE_DEVICES=0,1 "${cmd[@]}" >> $W/logs/parity-cp2.log 2>&1; rc=$?
echo "exit $rc after $((SECONDS - t0)) s" | tee -a $W/logs/parity-cp2.log | sed "s/^/parity-cp2: /"
printf '%s\t%s\t%s\n' parity-cp2 $rc $((SECONDS - t0)) >> $W/steps.tsv
rm -rf $W/runs/parity-cp2/checkpoints
python3 benchmarks/smoke_checks.py report $W $OUT --seconds $((574 + SECONDS - t0)) > $OUT/report.txt 2>&1; echo "report exit $?"
cat $OUT/report.txt | tail -30; cp .carry/run98.sh $OUT/run.sh; cp $W/steps.tsv $OUT/
