#!/usr/bin/env bash
# Device call 21 (2 GPUs; main 361762b + wip/tp-cudagraphs + async TP that fuses, commit 29c7ebd): Llama-3-8B shapes,
# seq 4096, GB 8, pure bf16, full AC, micro-batch 1, compiled: tp=2 without and with async TP, same call.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w21; mkdir -p $W; T0=$SECONDS
nvidia-smi --query-gpu=name --format=csv,noheader
for name in sw-full-compile sw-full-compile-asynctp; do
  OUT=$W/r TP=2 GB=8 WARMUP=1 STEPS=2 EXTRA="--model.dtype=bfloat16" timeout -k 5 95 \
    bash benchmarks/gpu_sweep.sh llama3-8b 4096 $name > $W/$name.sweep.log 2>&1
  pkill -9 -f "$W/r/$name" 2>/dev/null; sleep 1; echo "[$name done at $((SECONDS-T0)) s]"
done
grep -h "fuse\|async TP found" $W/r/*.log | cut -c40- | sort | uniq -c | head -6
python3 - $W/r $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {p.stem: json.loads(p.read_text()) for p in w.glob("*.json")}
(out / "sweep.json").write_text(json.dumps(rows, indent=1))
(out / "logs.txt").write_text("\n".join(f"==== {p}\n{p.read_text()[-6000:]}" for p in sorted(w.rglob("*.log"))))
for k, r in sorted(rows.items()):
    print(f"{k:28} {r['step_time_s_median']:7.3f} s {r['tokens_per_s_per_device']:8.0f} tok/s/dev {r['mfu']:6.1%} "
          f"{r['peak_mem_gib']:5.1f} GiB {r['device']}")
PY
