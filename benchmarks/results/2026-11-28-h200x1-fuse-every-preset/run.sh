#!/usr/bin/env bash
# Device call 120 (1 GPU; no 2-GPU kind lent), session 29: shardwise.fuse's pass through CUDA inductor for every
# architecture preset. Each preset at tp=1, compiled, fp32, 20 steps, seq 512, 4 rows a step, pass on (main) against
# off (.carry/xpass, X_NOFUSE=1); tiny-qwen2 and tiny-qwen2-moe (biased q/k/v) also with async TP's bias form forced
# (X_FORCEBIAS=1). Nothing timed: the runs share the GPU, five at a time. Prints each preset's largest relative loss
# gap and the merges per compiled graph.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) NEW=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
one() {  # PRESET MODE
  local preset=$1 mode=$2 extra=
  [ "$preset" = tiny-gemma2 ] && extra=--model.attn_implementation=eager
  env $([ "$mode" = off ] && echo X_NOFUSE=1) $([ "$mode" = force ] && echo X_FORCEBIAS=1) \
    PYTHONPATH=$NEW/.carry/xpass:$NEW/src:/tmp/site TORCHINDUCTOR_CACHE_DIR=/tmp/ic-$preset-$mode \
    timeout 240 python3 -m shardwise.cli train --model.preset=$preset --parallel.tp=1 --train.compile=true \
    --train.dtype=float32 --train.steps=20 --train.seq_len=512 --train.global_batch_size=4 --train.micro_batch_size=4 \
    --train.eval_every=0 --output.dir=/tmp/p/$preset-$mode --output.progress=false $extra > /tmp/p/$preset-$mode.log 2>&1
  echo "$preset $mode exit $? [at $SECONDS s]"
}
export -f one; export NEW
mkdir -p /tmp/p
P="tiny-qwen2 tiny-llama tiny-qwen3 tiny-mistral tiny-gemma2 tiny-gemma3 tiny-phi3 tiny-olmo2 tiny-granite tiny-qwen2-moe"
{ for p in $P; do echo "$p on"; echo "$p off"; done; echo "tiny-qwen2 force"; echo "tiny-qwen2-moe force"; } |
  xargs -P 5 -L 1 bash -c 'one "$0" "$1"' | tee $OUT/rows.txt
python3 - $P <<'PY' | tee -a $OUT/rows.txt
import json, re, sys
def losses(run):
    try:
        return [json.loads(x)["loss"] for x in open(f"/tmp/p/{run}/metrics.jsonl")]
    except OSError:
        return None
print(f"{'preset':16} {'merged/graph':14} {'on vs off':>10} {'force vs off':>13}  final on / off")
for p in sys.argv[1:]:
    on, off, force = (losses(f"{p}-{m}") for m in ("on", "off", "force"))
    merged = sorted({int(m) for m in re.findall(r"\[fuse\] merged (\d+)", open(f"/tmp/p/{p}-on.log").read())})
    gap = lambda a: "-" if a is None or off is None else f"{max(abs(x - y) / abs(y) for x, y in zip(a, off, strict=True)):.2e}"
    fin = f"{on[-1]:.6f} / {off[-1]:.6f}" if on and off else "missing"
    print(f"{p:16} {str(merged):14} {gap(on):>10} {gap(force):>13}  {fin}")
PY
cp .carry/run120.sh $OUT/run.sh; cp .carry/xpass/sitecustomize.py $OUT/xpass-sitecustomize.py
tar czf $OUT/logs.tgz -C /tmp/p $(cd /tmp/p && ls *.log) 2>/dev/null
