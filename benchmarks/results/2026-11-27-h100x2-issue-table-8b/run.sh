#!/usr/bin/env bash
# Device call 65 (2 GPUs): the TP issue's Llama-3-8B rows and its real-training row on main as it stands, in one call.
# Llama-3-8B shapes, seq 4096, GB 8, fp32 master weights, compiled, full checkpointing, micro-batch 1: shardwise tp=2,
# the design note's recipe at tp=2, shardwise dp_shard=2 (out of memory in the issue). Then `shardwise train` with its
# defaults (compile auto) at Qwen2-0.5B shapes, seq 1024, 60 steps: tp=2 against dp_shard=2.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w65; rm -rf $W; mkdir -p $W; END=${END:-565}
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1
for tp in 2 1; do
  t0=$SECONDS
  PYTHONPATH=$PWD/src:/tmp/site timeout 170 python3 -m shardwise.cli train --model.preset=qwen2-0.5b --train.seq_len=1024 \
    --train.steps=60 --parallel.tp=$tp --output.progress=false --output.dir=$W/train-tp$tp > $W/train-tp$tp.log 2>&1
  echo "shardwise train qwen2-0.5b tp=$tp: exit $? in $((SECONDS - t0)) s"; grep -h "shardwise: note\|Error" $W/train-tp$tp.log | head -3
done
python3 - $W <<'PY' | tee $OUT/train.txt
import json, pathlib, statistics, sys
w = pathlib.Path(sys.argv[1])
for tp in (2, 1):
    f = w / f"train-tp{tp}" / "metrics.jsonl"
    rows = [json.loads(l) for l in f.read_text().splitlines() if '"loss"' in l] if f.exists() else []
    if not rows:
        print(f"tp={tp}: no metrics"); continue
    late = rows[len(rows) // 2:]
    tps = statistics.median(r["tokens_per_s_per_device"] for r in late)
    mfu = statistics.median(r["mfu"] for r in late)
    print(f"qwen2-0.5b seq 1024 shardwise train defaults, tp={tp} dp_shard={2 // tp}: {len(rows)} steps, median of "
          f"steps {late[0]['step']}-{late[-1]['step']}: {tps:,.0f} tokens/s/device, MFU {mfu:.1%}, "
          f"peak {max(r['peak_mem_gib'] for r in rows):.1f} GiB, loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")
PY
for tp in 2 1; do cp $W/train-tp$tp/run.json $OUT/train-tp$tp-run.json 2>/dev/null; done
export WARMUP=2 STEPS=3
row b 8b-tp2 llama3-8b 4096 2 8 sw-full-compile 140 ""
row b 8b-tp2-recipe llama3-8b 4096 2 8 recipe-compile 140 ""
row b 8b-dp2 llama3-8b 4096 1 8 sw-full-compile 140 ""
cp .carry/run65.sh $OUT/run.sh
summarize $OUT
