#!/usr/bin/env bash
# Device call 143 (1 GPU), session 34: attention per sequence trained on a GPU's kernels, checked against one GPU. Two
# torchrun workers share the one H200 through gloo (gloo_peer.py; NCCL refuses two ranks on one device): the tiny
# default job (tiny-qwen2, seq 256, GB 16, bf16 compute, fp32 master weights, compiled: the GPU defaults), 60 steps,
# at tp=2 split by heads and per sequence, beside one GPU alone; each loss curve against the one-GPU curve.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
W=/tmp/w143; rm -rf $W; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
RUN="--train.steps=60 --train.eval_every=0 --output.progress=false --checkpoint.every=0"
T0=$SECONDS
timeout 200 python3 -m shardwise.cli train $RUN --parallel.tp=1 --parallel.dp_shard=1 --output.dir=$W/one > $W/one.log 2>&1
echo "one exit $? at $((SECONDS - T0)) s"
for a in heads sequences; do
  timeout 200 torchrun --standalone --nproc-per-node=2 .carry/gloo_peer.py train $RUN --parallel.tp=2 \
    --parallel.dp_shard=1 --parallel.tp_attention=$a --output.dir=$W/tp2-$a > $W/tp2-$a.log 2>&1
  echo "tp2-$a exit $? at $((SECONDS - T0)) s"; grep -m2 -o "Error.\{0,300\}" $W/tp2-$a.log
done
python3 - $W $OUT <<'PY'
import json, pathlib, sys
w, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
curves = {}
for name in ("one", "tp2-heads", "tp2-sequences"):
    f = w / name / "metrics.jsonl"
    curves[name] = [json.loads(l)["loss"] for l in f.read_text().splitlines()] if f.exists() else None
(out / "curves.json").write_text(json.dumps(curves))
(out / "logs.txt").write_text("\n".join(f"==== {p.name}\n{p.read_text()[-4000:]}" for p in sorted(w.glob("*.log"))))
ref = curves["one"]
for name, c in curves.items():
    if c is None or ref is None:
        print(name, "no curve"); continue
    gaps = [abs(a - b) / abs(b) for a, b in zip(c, ref)]
    print(f"{name:14} steps {len(c)} loss {c[0]:.4f} -> {c[-1]:.4f}  vs one GPU: max rel gap {max(gaps):.2e}, "
          f"mean {sum(gaps) / len(gaps):.2e}")
PY
cp .carry/run143.sh $OUT/run.sh; cp .carry/gloo_peer.py $OUT/
