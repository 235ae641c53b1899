#!/usr/bin/env bash
# Device call 75 (2 GPUs): benchmarks/gpu_smoke.sh as changed for flex, its lines for checks 2-4 and the dp2/tp2
# parity runs taken out by sed (call 74 ran those): the no-argument default job (compiled on GPUs, so packed rows now
# attend through flex), parity-1 (eager: sdpa's dense mask) on GPU 0 beside parity-1-flex
# (model.packed_attention=flex, flex compiled alone) on GPU 1.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
sed -e '/^train ft-a/d' -e '/ft-b/d' -e 's/^    export_check.*/    :/' -e 's/^  export_check.*/  :/' \
    -e '/^  parity dp2 2 1/d' -e '/^  parity tp2/d' benchmarks/gpu_smoke.sh > /tmp/smoke_part.sh
bash -n /tmp/smoke_part.sh || exit 1
diff benchmarks/gpu_smoke.sh /tmp/smoke_part.sh
OUT=$OUT SMOKE_WORK=/tmp/w75 timeout -k 5 400 bash /tmp/smoke_part.sh 2>&1 | tail -22
cat /tmp/w75/steps.tsv
for d in /tmp/w75/runs/*; do echo "$(basename $d): $(tail -1 $d/metrics.jsonl | cut -c1-330)"; done
grep -h "packed\|flex\|Warn" /tmp/w75/logs/default.log | sort | uniq -c | head
cp .carry/run75.sh $OUT/run.sh
