#!/usr/bin/env bash
# Device call 174 (2 GPUs), session 40, on call 173's warm machine: call 173's runs (its folder's files; its OUT was not
# the device's $OUT, so nothing came back), each curve's per-step gap to one GPU over steps 1-15, and OLMoE at tp=2
# compiled in bf16 (the GPUs' defaults) for 30 steps without and with the routers' load-balancing loss (0.01): tokens/s
# (median of steps 6-30) and dynamo's recompilations (TORCH_LOGS=recompiles).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w173 R=$OUT/2026-11-29-h200x2-router-loss T=$OUT/2026-11-29-h200x2-router-loss-compiled
mkdir -p $R $T
cp .carry/run173.sh $R/run.sh; cp .carry/run174.sh $T/run.sh; cp $W/steps.tsv $R/
( cd $W && find runs logs -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.log' | grep -v '/checkpoints/' > /tmp/list \
  && find . -maxdepth 2 -name config.json | sed 's#^\./##' >> /tmp/list && tar czf $R/work.tgz -T /tmp/list steps.tsv )
python3 benchmarks/smoke_checks.py report-archs $W $R > $R/archs.out 2>&1
python3 - $W > $R/gaps.txt <<'PY'
import json, sys
w = sys.argv[1]
def curve(n, key): return [json.loads(l).get(key) for l in open(f"{w}/runs/{n}/metrics.jsonl")]
for arch in ("olmoe", "qwen2_moe", "mixtral"):
    for key in ("loss", "router_loss"):
        ref = curve(f"{arch}-1", key)
        for lay in ("tp2", "dp2"):
            c = curve(f"{arch}-{lay}", key)
            print(arch, lay, key, " ".join(f"{abs(a - b) / abs(b):.1e}" for a, b in zip(c[:15], ref[:15])))
PY
cat $R/gaps.txt
for coef in 0 0.01; do
  name=olmoe-tp2-compiled-$coef
  TORCH_LOGS=recompiles timeout 200 python3 -m shardwise.cli train --model.path=$W/olmoe --parallel.tp=2 \
    --train.steps=30 --train.seq_len=1024 --train.global_batch_size=8 --train.micro_batch_size=4 --train.eval_every=0 \
    --train.warmup_steps=10 --train.lr=1e-3 --data.max_bytes=1000000 --data.cache_dir=$W/cache/$name \
    --output.dir=/tmp/$name --output.progress=false --train.router_aux_loss=$coef > $T/$name.log 2>&1
  echo "$name exit $?"
  cp /tmp/$name/metrics.jsonl $T/$name.metrics.jsonl; cp /tmp/$name/run.json $T/$name.run.json
done
python3 - $T <<'PY' | tee $T/table.txt
import json, statistics, sys
t = sys.argv[1]
print("row                          tok/s/GPU  MFU     router_loss 1 -> 30  recompilations  loss 30")
for coef in ("0", "0.01"):
    n = f"olmoe-tp2-compiled-{coef}"
    r = [json.loads(l) for l in open(f"{t}/{n}.metrics.jsonl")]
    tps = statistics.median(x["tokens_per_s_per_device"] for x in r[5:])
    mfu = statistics.median(x["mfu"] for x in r[5:])
    rec = open(f"{t}/{n}.log").read().count("Recompiling function")
    print(f"{n:<28} {tps:>9,.0f}  {mfu:.1%}  {r[0].get('router_loss')} -> {r[-1].get('router_loss')}  {rec}  {r[-1]['loss']:.4f}")
PY
