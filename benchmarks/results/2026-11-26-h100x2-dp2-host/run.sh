#!/usr/bin/env bash
# Device call 60 (2 GPUs; rows of one stream are comparable): where the host time of Qwen2-1.5B dp_shard=2's
# forward goes (main 3a3032d, default, micro-batch 4, GB 8, profiled; .carry/between.py over its trace), and an
# experiment: dynamo skips guard evaluation after warmup (torch.compiler.set_stance(skip_guard_eval_unsafe=True);
# .carry/exp60.patch applied to a copy of the tree), interleaved with the default.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /tmp/pip.log 2>&1 || cat /tmp/pip.log
export PYTHONPATH=/tmp/site
W=/tmp/w60; rm -rf $W; mkdir -p $W; END=${END:-560}
EXP=/tmp/exp60; rm -rf $EXP; mkdir -p $EXP; cp -r src benchmarks pyproject.toml $EXP/; (cd $EXP && patch -p1 < $OLDPWD/.carry/exp60.patch)
source benchmarks/stream_rows.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | uniq -c
export CUDA_VISIBLE_DEVICES=0,1 WARMUP=2 STEPS=6
PROFILE=true row a p-dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
for t in $W/p-dp2/*/trace-rank0.json; do python3 .carry/between.py $t | tee $OUT/between.txt; PYTHONPATH=$PWD/src:/tmp/site python3 benchmarks/trace_gaps.py --largest 8 $t > $OUT/gaps.txt 2>&1; gzip -c $t > $OUT/trace-p-dp2.json.gz; done
for d in p-dp2; do for k in $W/$d/*/profile-kernels.txt; do echo "==== $d"; cat $k; done >> $OUT/kernels.txt; done
row a dp2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
SHARDWISE_EXP_SKIP_GUARDS=1 ROOT=$EXP row a dp2-skipguards qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
row a dp2-2 qwen2-1.5b 4096 1 8 sw-none-compile-mb4 80 ""
SHARDWISE_EXP_SKIP_GUARDS=1 ROOT=$EXP PROFILE=true row a p-dp2-skipguards qwen2-1.5b 4096 1 8 sw-none-compile-mb4 100 ""
for t in $W/p-dp2-skipguards/*/trace-rank0.json; do python3 .carry/between.py $t | tee -a $OUT/between.txt; done
cp .carry/run60.sh $OUT/run.sh; cp .carry/exp60.patch $OUT/experiment.patch
summarize $OUT
