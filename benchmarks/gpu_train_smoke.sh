#!/usr/bin/env bash
# GPU smoke runs of `shardwise train` on whatever GPUs the machine has (results under $OUT or ./runs).
# Usage: bash benchmarks/gpu_train_smoke.sh   (run from the repository root)
set -uo pipefail
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
OUT=${OUT:-runs/gpu}
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
TP=$(( NGPU >= 2 ? 2 : 1 ))
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c 'import torch, transformers, sys; print("torch", torch.__version__, "transformers", transformers.__version__, "python", sys.version.split()[0])'
run() {  # name, args...
  local name=$1; shift
  echo "=== $name: shardwise train $*"
  python3 -m shardwise.cli train --output.dir="$OUT/$name" --output.progress=false "$@" > "$OUT/$name.log" 2>&1
  echo "exit $?"; tail -n 3 "$OUT/$name.log"
}
mkdir -p "$OUT"
run default
run qwen2-1.5b --model.preset=qwen2-1.5b --parallel.tp=$TP --train.seq_len=4096 --train.global_batch_size=$((2 * NGPU / TP)) \
  --train.micro_batch_size=1 --train.steps=12 --train.warmup_steps=2 --train.lr=3e-4 --train.activation_checkpointing=full
run qwen2-1.5b-compile --model.preset=qwen2-1.5b --parallel.tp=$TP --train.seq_len=4096 --train.global_batch_size=$((2 * NGPU / TP)) \
  --train.micro_batch_size=1 --train.steps=12 --train.warmup_steps=2 --train.lr=3e-4 --train.activation_checkpointing=full --train.compile=true
python3 - "$OUT" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
print(f"{'run':22} {'steps':>5} {'loss0':>7} {'lossN':>7} {'tok/s/dev':>10} {'MFU':>6} {'mem GiB':>8}")
for d in sorted(p for p in out.iterdir() if (p / "metrics.jsonl").exists()):
    r = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    tail = r[len(r) // 2:]  # second half: past warm-up and compilation
    tps = statistics.median(x["tokens_per_s_per_device"] for x in tail)
    mfu = statistics.median(x["mfu"] for x in tail) if tail[0]["mfu"] is not None else float("nan")
    print(f"{d.name:22} {len(r):5d} {r[0]['loss']:7.3f} {r[-1]['loss']:7.3f} {tps:10.0f} {mfu:6.1%} {r[-1]['peak_mem_gib']:8.1f}")
PY
