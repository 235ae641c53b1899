"""The design note's recipe written plainly, timed like ``shardwise bench`` (same MFU formula).

HF ``*ForCausalLM`` with its own forward and loss, the note's TP plan via ``parallelize_module``
(when tp > 1), ``fully_shard`` per block and root with bf16/fp32 mixed precision, full activation
checkpointing with ``checkpoint_wrapper``, AdamW; optional ``torch.compile`` per block.
Run under torchrun:  torchrun --nproc-per-node=N benchmarks/recipe_baseline.py --preset qwen2-1.5b --tp 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.distributed as dist
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    loss_parallel,
    parallelize_module,
)
from transformers import AutoModelForCausalLM

from shardwise.config import ModelConfig
from shardwise.metrics import device_peak_flops, flops_per_token, mfu
from shardwise.model import CausalLM, flop_params, hf_config

BLOCK_PLAN = {
    "input_layernorm": SequenceParallel(),
    "post_attention_layernorm": SequenceParallel(),
    "self_attn": PrepareModuleInput(input_kwarg_layouts={"hidden_states": Shard(1)},
                                    desired_input_kwarg_layouts={"hidden_states": Replicate()}),
    "self_attn.q_proj": ColwiseParallel(), "self_attn.k_proj": ColwiseParallel(),
    "self_attn.v_proj": ColwiseParallel(), "self_attn.o_proj": RowwiseParallel(output_layouts=Shard(1)),
    "mlp": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
    "mlp.gate_proj": ColwiseParallel(), "mlp.up_proj": ColwiseParallel(),
    "mlp.down_proj": RowwiseParallel(output_layouts=Shard(1)),
}
TOP_PLAN = {
    "model.embed_tokens": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
    "model.norm": SequenceParallel(),
    "lm_head": ColwiseParallel(input_layouts=Shard(1), use_local_output=False),
}


def build(preset: str, tp: int, compile_blocks: bool) -> tuple[torch.nn.Module, object]:
    world = dist.get_world_size()
    mesh = init_device_mesh("cuda", (world // tp, tp), mesh_dim_names=("dp", "tp"))
    config = hf_config(ModelConfig(preset=preset))
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if tp > 1:
        for block in model.model.layers:
            parallelize_module(block, mesh["tp"], BLOCK_PLAN)
        parallelize_module(model, mesh["tp"], TOP_PLAN)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for i, block in enumerate(model.model.layers):
        block = checkpoint_wrapper(block)
        if compile_blocks:
            block.compile()
        model.model.layers.register_module(str(i), block)
        fully_shard(block, mesh=mesh["dp"], mp_policy=mp)
    fully_shard(model, mesh=mesh["dp"], mp_policy=mp)
    return model, mesh


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="qwen2-1.5b")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--accum", type=int, default=4, help="micro-batches per optimizer step")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    dist.init_process_group("nccl")
    torch.cuda.set_device(dist.get_rank() % torch.cuda.device_count())
    model, mesh = build(args.preset, args.tp, args.compile)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    ids = torch.randint(model.config.vocab_size, (args.micro_batch, args.seq_len), device="cuda")
    pos = torch.arange(args.seq_len, device="cuda").expand_as(ids)

    def step() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.accum):
            if args.tp > 1:
                with loss_parallel():
                    logits = model(input_ids=ids, position_ids=pos).logits
                    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
                    loss.backward()
            else:
                model(input_ids=ids, position_ids=pos, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        step()
    torch.cuda.reset_peak_memory_stats()
    times = [step() for _ in range(args.steps)]
    median = statistics.median(times)
    per_device = args.accum * args.micro_batch * args.seq_len * mesh["dp"].size() / median / dist.get_world_size()
    c = model.config
    n = flop_params(CausalLM(model))
    record = {
        "baseline": "design-note recipe", "preset": args.preset, "tp": args.tp, "world_size": dist.get_world_size(),
        "seq_len": args.seq_len, "micro_batch_size": args.micro_batch, "accum": args.accum, "compile": args.compile,
        "activation_checkpointing": "full", "step_time_s_median": median,
        "tokens_per_s_per_device": per_device,
        "mfu": mfu(per_device, flops_per_token(n, c.num_hidden_layers, c.hidden_size, args.seq_len),
                   device_peak_flops(torch.device("cuda"))),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
    }
    if dist.get_rank() == 0:
        print(json.dumps(record))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(record, f, indent=2)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
