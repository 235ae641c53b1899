#!/usr/bin/env bash
# Device call 91 (2 GPUs), session 22, main ccd46f2 (launch.default_tp reads the loaded config): README's GPU quick start (`shardwise train`, no arguments:
# tp=2 over both GPUs), then the same default job with only --parallel.cp=2 (no config file: the default tp=2 now
# gives way, tp=1), 100 steps; with only --parallel.tp=1 (dp_shard=2); and cp=2 with tp=2 asked for (refused: 4 ranks needed).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w91; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
run() {  # NAME ARGS...
  local name=$1 s=$SECONDS; shift
  (cd $W && timeout 200 python3 -m shardwise.cli train --output.dir=$W/$name --output.progress=false "$@" > $W/$name.log 2>&1)
  echo "$name: exit $? in $((SECONDS - s)) s"; grep -a "layout\|done:\|error" $W/$name.log | head -4 | cut -c1-200
  python3 -c "
import json,sys
r=[json.loads(l) for l in open('$W/$name/metrics.jsonl') if l.strip()]
v=[x['val_loss'] for x in r if x.get('val_loss') is not None]
info=json.load(open('$W/$name/run.json'))
print('  mesh', info['mesh'], 'loss', round(r[0]['loss'],3), '->', round(r[-1]['loss'],3), 'val', round(v[0],3), '->', round(v[-1],3), 'steps', len(r))" 2>&1 | tail -1
  mkdir -p $OUT/$name; cp $W/$name.log $OUT/$name/train.log; cp $W/$name/metrics.jsonl $W/$name/run.json $OUT/$name/ 2>/dev/null
}
run default
run default-cp2 --parallel.cp=2 --train.steps=100
run default-tp1 --parallel.tp=1 --train.steps=100
run default-cp2-tp2 --parallel.cp=2 --parallel.tp=2 --train.steps=5
cp .carry/run91.sh $OUT/run.sh
