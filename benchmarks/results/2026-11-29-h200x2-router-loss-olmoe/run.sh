#!/usr/bin/env bash
# Device call 176 (2 GPUs), session 40, on a fresh machine (calls 174-175's files were lost with theirs): OLMoE, the
# mixture of experts whose curve parted from one GPU in call 173, with the routers' load-balancing loss at 0.1 (fp32
# eager): gpu_archs.sh's check at tp=2 and dp_shard=2, then the one-GPU reference's own command twice more, side by
# side, to see how far the same run parts from itself; then OLMoE at tp=2 compiled in bf16 (the GPUs' defaults) for 30
# steps without and with the loss (0.01): tokens/s (median of steps 6-30) and dynamo's recompilations.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
R=$OUT/2026-11-29-h200x2-router-loss-olmoe W=/tmp/w176
mkdir -p $R; cp .carry/run176.sh $R/run.sh
ARCH_NAMES=olmoe ARCH_LAYOUTS="tp2 dp2" ARCH_FLAGS="--train.router_aux_loss=0.1" RUN_TIMEOUT=200 SMOKE_WORK=$W OUT=$R \
  timeout 300 bash benchmarks/gpu_archs.sh > $R/archs.out 2>&1
echo "gpu_archs exit $? after $SECONDS s"
read -r -a cmd < <(head -n 1 $W/logs/olmoe-1.log | sed 's/^\$ //')
for g in 0 1; do
  c=("${cmd[@]//olmoe-1/olmoe-1-again$g}")
  ( echo "\$ ${c[*]}" > $W/logs/olmoe-1-again$g.log; CUDA_VISIBLE_DEVICES=$g "${c[@]}" >> $W/logs/olmoe-1-again$g.log 2>&1 ) &
done
wait
python3 - $W <<'PY' | tee $R/gaps.txt
import json, sys
w = sys.argv[1]
def curve(n, key): return [json.loads(l)[key] for l in open(f"{w}/runs/{n}/metrics.jsonl")]
for key in ("loss", "router_loss"):
    ref = curve("olmoe-1", key)
    for n in ("olmoe-tp2", "olmoe-dp2", "olmoe-1-again0", "olmoe-1-again1"):
        gaps = [abs(a - b) / abs(b) for a, b in zip(curve(n, key), ref)]
        print(f"{n:<15} {key:<11} 1-10 max {max(gaps[:10]):.2e} | 11-50 max {max(gaps[10:]):.2e} | steps 1-12:",
              " ".join(f"{g:.0e}" for g in gaps[:12]))
PY
for coef in 0 0.01; do
  name=olmoe-tp2-compiled-$coef
  TORCH_LOGS=recompiles timeout 150 python3 -m shardwise.cli train --model.path=$W/olmoe --parallel.tp=2 \
    --train.steps=30 --train.seq_len=1024 --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 \
    --train.warmup_steps=10 --train.lr=1e-3 --data.max_bytes=1000000 --data.cache_dir=$W/cache/$name \
    --output.dir=$W/runs/$name --output.progress=false --train.router_aux_loss=$coef > $W/logs/$name.log 2>&1
  echo "$name exit $?"
done
python3 - $W <<'PY' | tee $R/table.txt
import json, statistics, sys
w = sys.argv[1]
print("row                      tok/s/GPU  MFU   router_loss step 1 -> 30  recompilations  loss 30")
for coef in ("0", "0.01"):
    n = f"olmoe-tp2-compiled-{coef}"
    r = [json.loads(l) for l in open(f"{w}/runs/{n}/metrics.jsonl")]
    tps = statistics.median(x["tokens_per_s_per_device"] for x in r[5:])
    mfu = statistics.median(x["mfu"] for x in r[5:])
    rec = open(f"{w}/logs/{n}.log").read().count("Recompiling function")
    rl = f"{r[0].get('router_loss') or 0:.4f} -> {r[-1].get('router_loss') or 0:.4f}" if coef != "0" else "-"
    print(f"{n:<24} {tps:>9,.0f}  {mfu:.2%}  {rl:<24}  {rec:>14}  {r[-1]['loss']:.4f}")
PY
cd $W && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && tar czf $R/work.tgz -T /tmp/list steps.tsv
tail -n 12 $R/archs.out
