#!/usr/bin/env bash
# Device call 81 (2 GPUs side by side): exp81.py (beside this file; .carry/ on the device) mask on GPU 0 (what sdpa keeps per layer for a boolean mask),
# flex on GPU 1 (flex's compile and step time: square rows, CP's shape with index tensors, with arithmetic indices).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=$PWD/src:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
CUDA_VISIBLE_DEVICES=0 timeout 200 python3 exp81.py (beside this file; .carry/ on the device) mask > $OUT/mask.json 2> $OUT/mask.err &
CUDA_VISIBLE_DEVICES=1 timeout 480 python3 exp81.py (beside this file; .carry/ on the device) flex > $OUT/flex.json 2> $OUT/flex.err
wait
tail -3 $OUT/mask.err $OUT/flex.err | cut -c1-300
cat $OUT/mask.json $OUT/flex.json
cp .carry/run81.sh exp81.py (beside this file; .carry/ on the device) $OUT/
