#!/usr/bin/env bash
# Device call 173 (2 GPUs), session 40: the routers' load-balancing loss (train.router_aux_loss, shardwise.router) in
# gpu_archs.sh's mixture-of-experts check: OLMoE, Qwen2-MoE and Mixtral at tp=2 and dp_shard=2 against one GPU, every
# run with the loss at coefficient 0.1 (fp32 eager: the first 10 steps within 1e-4, the rest beside the twin). Nothing
# is timed here (call 174 does, on this machine's model folders).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w173
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
ARCH_NAMES="olmoe qwen2_moe mixtral" ARCH_LAYOUTS="tp2 dp2" ARCH_FLAGS="--train.router_aux_loss=0.1" RUN_TIMEOUT=300 \
  SMOKE_WORK=$W timeout 540 bash benchmarks/gpu_archs.sh > $OUT/archs.out 2>&1
rc=$?
[ -f $OUT/archs.json ] || python3 benchmarks/smoke_checks.py report-archs $W $OUT >> $OUT/archs.out 2>&1
echo "gpu_archs exit $rc after $SECONDS s"
cp $W/steps.tsv $OUT/ 2>/dev/null; cp .carry/run173.sh $OUT/run.sh
for m in $W/runs/*/metrics.jsonl; do
  printf '%s router_loss steps 1, 50: %s\n' "$(basename "$(dirname "$m")")" \
    "$(python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(r[0].get('router_loss'), r[-1].get('router_loss'))" "$m")"
done | tee $OUT/router_loss.txt
cd $W && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $OUT/work.tgz -T /tmp/list steps.tsv
tail -n 30 $OUT/archs.out
