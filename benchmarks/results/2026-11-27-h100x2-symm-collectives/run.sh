#!/usr/bin/env bash
# Device call 68 (2 GPUs): TP collectives at Qwen2-1.5B step sizes, NCCL against symmetric memory's SM kernels.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
python3 -c "import torch; print(torch.__version__, torch.cuda.nccl.version())"
OUT=$OUT timeout -k 5 240 torchrun --nproc-per-node=2 .carry/symm_bw.py 2>&1 | grep -v "^W1\|OMP_NUM" | tail -60
cp .carry/run68.sh .carry/symm_bw.py $OUT/
