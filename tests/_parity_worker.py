"""Run under torchrun: train every case of one layout with shardwise and save what it saw.

For each model variant it saves the per-step losses and grad norms, the full (gathered)
gradients of the first step, the final weights and ``num_params``; the pytest side compares
them with a plain single-process Hugging Face reference.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.distributed as dist
from _parity_cases import VARIANTS, case_config, register_variants
from torch.distributed.tensor import DTensor

from shardwise.data import StepBatches, TokenWindows, byte_tokenizer, load_tokens
from shardwise.model import num_params
from shardwise.train import build_run, forward_backward, optimizer_step


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu().clone()


def run_case(variant: str, overrides: dict[str, str]) -> dict:
    cfg = case_config(variant, overrides)
    run = build_run(cfg)
    windows = TokenWindows(load_tokens(cfg.data, byte_tokenizer()), cfg.train.seq_len, cfg.train.seed)
    batches = StepBatches(windows, cfg.train.global_batch_size, cfg.train.micro_batch_size,
                          run.meshes.dp.get_local_rank(), run.layout.dp)
    out = {"losses": [], "grad_norms": [], "num_params": num_params(run.model)}
    for step in range(cfg.train.steps):
        out["losses"].append(forward_backward(run, batches(step)))
        if step == 0:
            out["grads"] = {n.removeprefix("hf."): _full(p.grad) for n, p in run.model.named_parameters()}
        out["grad_norms"].append(optimizer_step(run)[0])
    out["weights"] = {n.removeprefix("hf."): _full(p) for n, p in run.model.named_parameters()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--overrides", required=True, help="JSON dict of config overrides for the layout")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    register_variants()
    results = {v: run_case(v, json.loads(args.overrides)) for v in VARIANTS}
    if dist.get_rank() == 0:
        torch.save(results, args.out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
