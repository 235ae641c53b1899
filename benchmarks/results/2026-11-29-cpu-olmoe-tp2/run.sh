# CPU (this session machine: 2 cores, Python 3.11.7, torch 2.13.0+cpu, transformers 5.24.0), after
# `python benchmarks/smoke_checks.py prepare-archs /tmp/s40/ga` (the GPU check's olmoe folder: hidden 512, 8 layers).
# OLMoE at the GPU check's shapes on CPU gloo, fp32 eager, as gpu_archs.sh runs it (12 steps): 1 vs tp=2, loss on/off
W=/tmp/s40/ga
run() { # name coef extra...
  local name=$1 coef=$2; shift 2
  OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= python -m shardwise.cli train --output.dir=$W/runs/$name --output.progress=false \
    --model.path=$W/olmoe --data.cache_dir=$W/cache --train.steps=12 --train.seq_len=1024 --train.lr=1e-3 \
    --train.warmup_steps=10 --data.max_bytes=1000000 --train.global_batch_size=8 --train.micro_batch_size=4 \
    --train.eval_every=0 --train.activation_checkpointing=none --parallel.dp_shard=1 --parallel.cp=1 \
    --train.router_aux_loss=$coef --train.dtype=float32 --train.compile=false "$@" > $W/$name.log 2>&1
  echo "$name exit $? at $SECONDS s"
}
run ref-0.1 0.1 --parallel.tp=1 --model.packed_attention=mask --checkpoint.every=0
run tp2-0.1 0.1 --parallel.tp=2 --parallel.tp_attention=sequences
run ref-0 0 --parallel.tp=1 --model.packed_attention=mask
run tp2-0 0 --parallel.tp=2 --parallel.tp_attention=sequences
