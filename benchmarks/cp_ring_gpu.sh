#!/usr/bin/env bash
# CP's ring exchange on 2 GPUs, not yet run: the attention check of every CP path (all-gather chunk pair, ring, each
# compiled; masked) against fp32 one-process attention (stops if one fails), then Llama-3.1-8B 32k and 8k, cp=2
# all-gather and ring vs dp_shard=2 (full checkpointing), and the ring without checkpointing, in one call.
# From the repository root on the 2-GPU machine, datasets wheels in .whl/.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
OUT=${OUT:-runs/cp-ring}; W=/tmp/cpk; mkdir -p $OUT $W; T0=$SECONDS
check() {  # NAME OVERRIDES: fails if any error exceeds 2% of the largest value
  PYTHONPATH=/tmp/site:$PWD/src:$PWD/tests timeout 90 torchrun --standalone --nproc-per-node=2 tests/_cp_attention_worker.py \
    --overrides "$2" --out $OUT/check-$1.pt > $W/check-$1.log 2>&1
  PYTHONPATH=/tmp/site python3 -c "
import torch; r = torch.load('$OUT/check-$1.pt')
worst = {p: round(max(max(rk[p]) for rk in r['ranks']), 5) for p in r['ranks'][0]}
print('check $1', r['kernel'], r['dtype'], r['ranks']); raise SystemExit(max(worst.values()) > 0.02)" \
    || { tail -25 $W/check-$1.log; return 1; }
}
row() {  # DIR SEQ NAME TIMEOUT EXTRA
  OUT=$W/$1 TP=1 GB=2 WARMUP=1 STEPS=2 EXTRA="$5" timeout -k 5 $4 bash benchmarks/gpu_sweep.sh llama3.1-8b $2 $3 2>&1 \
    | grep -v "^name" | tail -2
  pkill -9 -f "shardwise.cli" 2>/dev/null; sleep 2; echo "[$1 done at $((SECONDS-T0)) s]"
}
SHAPE='"shape": [1, 32, 8, 128, 2048]'
check bf16 "{\"device\": \"cuda\", $SHAPE}" || exit 1
BF="--model.dtype=bfloat16"
row cp2-32k 32768 sw-full-compile 110 "$BF --parallel.cp=2"
row cp2-32k-ring 32768 sw-full-compile 110 "$BF --parallel.cp=2 --parallel.cp_exchange=ring"
row dp2-32k 32768 sw-full-compile 100 "$BF --parallel.cp=1"
row cp2-32k-ring-noac 32768 sw-none-compile 110 "$BF --parallel.cp=2 --parallel.cp_exchange=ring"  # 126.7 GiB all-gathered
row cp2-8k 8192 sw-full-compile 70 "$BF --parallel.cp=2"
row cp2-8k-ring 8192 sw-full-compile 70 "$BF --parallel.cp=2 --parallel.cp_exchange=ring"
row dp2-8k 8192 sw-full-compile 70 "$BF --parallel.cp=1"
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {f"{d.name}/{p.stem}": json.loads(p.read_text()) for d in w.iterdir() if d.is_dir() for p in d.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-5000:]}" for p in sorted(w.rglob("*.log"))))
for k, r in sorted(rows.items()):
    print(f"{k:26} {r['step_time_s_median']:7.2f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} "
          f"{r['peak_mem_gib']:5.1f} GiB")
PY
