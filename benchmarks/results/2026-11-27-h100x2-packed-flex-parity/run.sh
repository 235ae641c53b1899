#!/usr/bin/env bash
# Device call 74 (2 GPUs): check 5 of benchmarks/gpu_smoke.sh alone (its other checks' lines taken out by sed): the
# parity model's 50 bf16 steps on real packed data (stdlib corpus, seq 1024) on 1 GPU with flex block masks (the new
# default) against 1 GPU through sdpa's dense mask, dp_shard=2, tp=2 and tp=2 without SP; eager, as the smoke runs.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
sed -e '/^train default/d' -e '/^train ft-a/d' -e '/ft-b/d' -e 's/^  export_check.*/  :/' benchmarks/gpu_smoke.sh > /tmp/parity_smoke.sh
diff benchmarks/gpu_smoke.sh /tmp/parity_smoke.sh
OUT=$OUT SMOKE_WORK=/tmp/w74 timeout -k 5 570 bash /tmp/parity_smoke.sh 2>&1 | tail -30
cat /tmp/w74/steps.tsv
for d in /tmp/w74/runs/parity-*; do echo "$(basename $d): $(tail -1 $d/metrics.jsonl | cut -c1-400)"; done
cp .carry/run74.sh $OUT/run.sh
