"""Run under torchrun with ``parallel.cp`` ranks: the logits of one packed probe batch through the dense masks of
local queries x gathered keys, then through flex ``BlockMask``s (``parallelize.apply_flex``, which ``auto`` does on
GPUs only), gathered back to whole rows; and how many times flex ran."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from _worker import run_worker

from shardwise import flex
from shardwise.config import load_config
from shardwise.cp import gather_sequence
from shardwise.parallelize import apply_flex
from shardwise.run import build_run
from shardwise.tp import Group
from shardwise.verify import full_copy, step_batches


def logits(overrides: dict) -> dict[str, Any]:
    cfg = load_config(None, overrides)
    run = build_run(cfg)
    probe = run.local_batch(step_batches(cfg, 0, run.layout.dp)(0)[0])
    g = Group.of(run.meshes.cp)
    calls = []
    attend = flex.flex_attention
    flex.flex_attention = lambda *a, **k: calls.append(1) or attend(*a, **k)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex warns that uncompiled it materializes the scores
        dense = gather_sequence(full_copy(run.logits(probe)), g)
        assert not calls
        apply_flex(run.model)
        flexed = gather_sequence(full_copy(run.logits(probe)), g)
    return {"dense": dense, "flex": flexed, "calls": len(calls), "packed": bool(probe.packed)}


if __name__ == "__main__":
    run_worker(logits)
