#!/usr/bin/env bash
# Device call 80 (2 GPUs): flex under context parallelism with the tie fix (2f3ee21). (1) Training parity, eager,
# fp32, tiny-gemma3 (tied; grouped K/V heads; sliding windows of 64 on alternate layers), seq 2048, 30 steps of real
# packed data: 1 GPU through the dense mask (GPU 0) beside 1 GPU through flex (GPU 1); then cp=2 through the dense
# mask and cp=2 through flex (model.packed_attention=flex: flex compiled alone, as in eager runs), each against the
# 1-GPU dense reference. (2) Speed: Qwen2-1.5B seq 16384, cp=2, GB 2 (micro-batch 1), compiled, no AC, rows packed
# with documents of ~2048 tokens: the dense mask against flex (forced), recompiles and graph breaks logged.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
W=/tmp/w80; rm -rf $W; mkdir -p $W; END=560
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
git log -1 --format=%h 2>/dev/null
P=(--model.preset=tiny-gemma3 --parallel.tp=1 --train.seq_len=2048 --train.steps=30 --train.global_batch_size=4
   --train.micro_batch_size=2 --train.dtype=float32 --train.compile=false --train.activation_checkpointing=none
   --train.eval_every=0 --output.progress=false --data.max_bytes=2000000 --checkpoint.every=0)
par() {  # NAME GPUS ARGS...
  local name=$1 gpus=$2 t0=$SECONDS; shift 2
  CUDA_VISIBLE_DEVICES=$gpus timeout 120 python3 -m shardwise.cli train "${P[@]}" --output.dir=$W/$name "$@" > $W/$name.log 2>&1
  echo "$name: exit $? in $((SECONDS - t0)) s"; grep -m2 "Error\|error:" $W/$name.log
}
par 1-mask 0 --model.packed_attention=mask &
par 1-flex 1 --model.packed_attention=flex
wait
par cp2-mask 0,1 --parallel.cp=2 --model.packed_attention=mask
par cp2-flex 0,1 --parallel.cp=2 --model.packed_attention=flex
python3 - $W <<'PY' | tee $OUT/parity.txt
import json, pathlib, sys
w = pathlib.Path(sys.argv[1])
def losses(name):
    f = w / name / "metrics.jsonl"
    return [json.loads(l)["loss"] for l in f.read_text().splitlines() if '"loss"' in l] if f.exists() else []
def gap(name, against):
    got, ref = losses(name), losses(against)
    if not got or len(got) != len(ref):
        return print(f"{name}: {len(got)} losses against {len(ref)}")
    gaps = [abs(a - b) / abs(b) for a, b in zip(got, ref)]
    print(f"{name} vs {against}, {len(ref)} steps fp32: loss {ref[0]:.4f} -> {ref[-1]:.4f} ({got[-1]:.4f}); "
          f"largest relative gap {max(gaps):.2e}, mean {sum(gaps)/len(gaps):.2e}")
for name, against in (("1-flex", "1-mask"), ("cp2-mask", "1-mask"), ("cp2-flex", "1-mask"), ("cp2-flex", "cp2-mask")):
    gap(name, against)
PY
export WARMUP=2 STEPS=5
DOCS="--parallel.cp=2 --bench.document_len=2048"
row a cp2-mask qwen2-1.5b 16384 1 2 sw-none-compile 110 "$DOCS --model.packed_attention=mask"
TORCH_LOGS=recompiles,graph_breaks row a cp2-flex qwen2-1.5b 16384 1 2 sw-none-compile 300 "$DOCS --model.packed_attention=flex"
grep -h "Recompil\|recompil\|Graph break\|graph break" $W/cp2-flex/*.log | cut -c1-200 | sort | uniq -c | sort -rn | head -12
grep -h "step\|compil" $W/cp2-flex/*.log | grep -v "^\[" | tail -5
summarize $OUT
cp .carry/run80.sh $OUT/run.sh
