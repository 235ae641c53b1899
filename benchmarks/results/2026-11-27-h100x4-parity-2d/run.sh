#!/usr/bin/env bash
# Device call 100 (4 GPUs), session 24, main 6aee977: the 2D layout (dp_shard=2 x tp=2) and tp=4 have never run on
# GPUs. The GPU smoke's parity job (Qwen2-0.5B shapes from a bf16 HF folder, 50 bf16 steps, seq 1024, GB 8, lr 1e-3)
# on 1 GPU against dp_shard=2 x tp=2 eager (the smoke's row), compiled, compiled + async TP, and tp=4 compiled +
# async TP; each run's loss curve against the 1-GPU one by smoke_checks' check 5, memory against the plan by check 6.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w100; rm -rf $W; mkdir -p $W/logs $W/runs $OUT
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
nvidia-smi topo -m | head -6
python3 -c "
import torch; n=torch.cuda.device_count()
print('peer access', [[int(torch.cuda.can_device_access_peer(i, j)) if i != j else 1 for j in range(n)] for i in range(n)])
try:
    import pynvml; print('pynvml', pynvml.__file__)
except ImportError as e: print('no pynvml:', e)
"
python3 benchmarks/smoke_checks.py versions
python3 benchmarks/smoke_checks.py prepare $W > $W/logs/prepare.log 2>&1 || tail -5 $W/logs/prepare.log
P=(--train.steps=50 --train.seq_len=1024 --train.lr=1e-3 --train.warmup_steps=10 --data.max_bytes=1000000
   --model.path=$W/parity-model --train.global_batch_size=8 --train.eval_every=0 --train.compile=false
   --train.activation_checkpointing=none)
T0=$SECONDS
parity() {  # NAME GPUS DP TP ARGS...
  local name=parity-$1 gpus=$2 dp=$3 tp=$4 t0=$SECONDS; shift 4
  local mb=$(( 8 / dp < 4 ? 8 / dp : 4 ))
  CUDA_VISIBLE_DEVICES=$gpus python3 -m shardwise.cli train --output.dir=$W/runs/$name --output.progress=false "${P[@]}" \
    --parallel.dp_shard=$dp --parallel.tp=$tp --parallel.cp=1 --train.micro_batch_size=$mb "$@" > $W/logs/$name.log 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' $name $rc $((SECONDS - t0)) >> $W/steps.tsv
  rm -rf $W/runs/$name/checkpoints
  echo "$name: exit $rc after $((SECONDS - t0)) s (at $((SECONDS - T0)) s)"; [ $rc = 0 ] || tail -4 $W/logs/$name.log
  grep -h "note:" $W/logs/$name.log | head -3
}
C=(--train.compile=true)
parity 1 0 1 1
parity dp2xtp2 0,1,2,3 2 2
parity dp2xtp2-compiled 0,1,2,3 2 2 "${C[@]}"
parity dp2xtp2-async 0,1,2,3 2 2 "${C[@]}" --parallel.async_tp=true
parity tp4-async 0,1,2,3 1 4 "${C[@]}" --parallel.async_tp=true
cd benchmarks && python3 - $W <<'PY' | tee $OUT/summary.txt
import sys, json
from pathlib import Path
import smoke_checks as s
w = s.Work(Path(sys.argv[1]))
rows = s.check_parity(w, "cuda") + s.check_plans(w, "cuda")
print(s.table(rows))
for n in w.steps:
    r = s.read_metrics(w.run_dir(n))
    if r:
        tps = sorted(x["tokens_per_s_per_device"] for x in r[10:])
        print(f"{n:28} final loss {r[-1]['loss']:.4f}  median tok/s/dev over steps 11-50 {tps[len(tps) // 2]:,.0f}")
(Path(sys.argv[1]) / "rows.json").write_text(json.dumps(rows, indent=1))
PY
cd ..
cp $W/rows.json $W/steps.tsv $OUT/; cat $W/logs/*.log | tail -c 200000 > $OUT/logs.txt; cp .carry/run100.sh $OUT/run.sh
