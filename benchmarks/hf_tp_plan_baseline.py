"""Hugging Face transformers' own tensor parallelism, trained plainly and timed like ``shardwise bench``.

``AutoModelForCausalLM.from_pretrained(folder, tp_plan="auto")`` shards the model over every
process with the architecture's built-in plan; the loop is the model's own forward and loss,
optional gradient checkpointing (``gradient_checkpointing_enable``), and AdamW with
``foreach=False`` (the norms stay plain tensors beside DTensor weights, which the foreach kernels
refuse). Weights are bf16, as people load them for this path. The folder is a random-init
checkpoint of a shardwise preset, written once by rank 0 (``--ckpt-dir``, reused when present).
MFU uses the one formula in ``shardwise.metrics``. transformers needs ``accelerate`` for ``tp_plan``
(not a shardwise dependency: install it beside this script).

Run under torchrun:  torchrun --nproc-per-node=N benchmarks/hf_tp_plan_baseline.py --preset qwen2-1.5b
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import transformers
from transformers import AutoModelForCausalLM

from shardwise.config import ModelConfig
from shardwise.metrics import device_peak_flops, flops_per_token, mfu
from shardwise.model import build_meta_model, flop_params, hf_config


def write_checkpoint(preset: str, folder: Path) -> None:
    """Rank 0 saves a random-init bf16 checkpoint of ``preset`` (once); the others wait for it."""
    if dist.get_rank() == 0 and not (folder / "config.json").exists():
        model = AutoModelForCausalLM.from_config(hf_config(ModelConfig(preset=preset)), dtype=torch.bfloat16)
        model.save_pretrained(folder)
        del model
    dist.barrier()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="qwen2-1.5b")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--accum", type=int, default=4, help="micro-batches per optimizer step")
    parser.add_argument("--ac", action="store_true", help="gradient checkpointing (full, HF's)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--ckpt-dir", default="")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    folder = Path(args.ckpt_dir or f"/tmp/shardwise-hf-{args.preset}")
    write_checkpoint(args.preset, folder)
    model = AutoModelForCausalLM.from_pretrained(folder, tp_plan="auto", dtype=torch.bfloat16)
    model.to(device)  # a no-op once sharded; with one process transformers leaves the model on the CPU
    if args.ac:
        model.gradient_checkpointing_enable()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(model.config.vocab_size, (args.micro_batch, args.seq_len), generator=gen).to(device)

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.accum):
            (model(input_ids=ids, labels=ids).loss / args.accum).backward()
        opt.step()
        opt.zero_grad()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = torch.tensor([step() for _ in range(args.steps)], dtype=torch.float64, device=device)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)
    median = statistics.median(times.tolist())
    # Every rank is one TP rank of the same batch: tokens per device = one rank's tokens / world.
    per_device = args.accum * args.micro_batch * args.seq_len / median / dist.get_world_size()
    c = model.config
    n = flop_params(build_meta_model(c))
    record = {
        "baseline": "transformers tp_plan=auto", "preset": args.preset, "tp": dist.get_world_size(),
        "world_size": dist.get_world_size(), "seq_len": args.seq_len, "micro_batch_size": args.micro_batch,
        "accum": args.accum, "compile": False, "activation_checkpointing": "full" if args.ac else "none",
        "step_time_s_median": median, "tokens_per_s_per_device": per_device,
        "mfu": mfu(per_device, flops_per_token(n, c.num_hidden_layers, c.hidden_size, args.seq_len),
                   device_peak_flops(device)),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    if dist.get_rank() == 0:
        print(json.dumps(record))
        if args.out:
            Path(args.out).write_text(json.dumps(record, indent=2))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
