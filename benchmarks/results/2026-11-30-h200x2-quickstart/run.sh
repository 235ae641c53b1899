#!/usr/bin/env bash
# Device call 181 (2 GPUs), session 41: README's quick start on main as it stands: `shardwise train` with no arguments
# (every GPU, nccl, bf16, the GPU defaults), then its final checkpoint exported.
set -uo pipefail
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd) REPO=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=$PWD/src:/tmp/site || exit 1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, sys; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.get_device_name(0), torch.cuda.device_count())"
python3 -c "from shardwise.bench import source_digest; print('source digest', source_digest())"
cd /tmp && rm -rf /tmp/qs && mkdir /tmp/qs && cd /tmp/qs
start=$SECONDS
python3 -m shardwise.cli train > $OUT/train.log 2>&1; rc=$?
echo "train exit $rc after $((SECONDS - start)) s"; grep -v "^$" $OUT/train.log | tail -6
cp runs/*/metrics.jsonl runs/*/summary.json runs/*/run.json $OUT/ 2>/dev/null || find /tmp/qs -maxdepth 3 | head -20
CKPT=$(ls -d runs/default/checkpoints/step-* | sort -t- -k2 -n | tail -1); echo "final checkpoint $CKPT"
python3 -m shardwise.cli export "$CKPT" /tmp/qs/hf && python3 -c "
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained('/tmp/qs/hf'); print('exported', type(m).__name__, sum(p.numel() for p in m.parameters()), 'parameters')"
cp $REPO/.carry/run181.sh $OUT/run.sh
