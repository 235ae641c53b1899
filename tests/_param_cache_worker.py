"""Run under torchrun: two steps of a TP-only layout (bf16 compute, fp32 master weights) reading parameters through
the cached compute copies, and the same two steps through the per-read path (``shardwise.tp`` believing it is being
compiled); rank 0 saves both runs' gradients and weights, and what the reads returned."""

from __future__ import annotations

import torch
from _worker import run_worker, train_steps

from shardwise import tp
from shardwise.config import load_config
from shardwise.run import build_run


def two_steps(overrides: dict, cached: bool) -> dict:
    tp.is_compiling = lambda: not cached
    run = build_run(load_config(None, overrides))
    q_proj, hf = run.model.layers[0].self_attn.q_proj, run.model.hf
    first = q_proj.weight
    out = {"reads_agree": q_proj.weight is first, "tied_reads_differ": hf.lm_head.weight is not hf.model.embed_tokens.weight,
           "dtype": first.dtype, **train_steps(run)}
    out["renewed"] = q_proj.weight is not first and not torch.equal(q_proj.weight, first)
    return out


def compare(overrides: dict) -> dict:
    return {"cached": two_steps(overrides, True), "per_read": two_steps(overrides, False)}


if __name__ == "__main__":
    run_worker(compare)
