"""Run under torchrun with ``parallel.cp`` (or ``parallel.tp``) ranks: one packed step through the dense masks (of
local queries x gathered keys under CP), then through flex ``BlockMask``s (``parallelize.apply_flex``, which ``auto``
does on GPUs only), on the same weights: the logits of a probe batch gathered back to whole rows, the loss, the
gradients, and how often flex ran.

Flex's backward runs on CPU here through its eager reference implementation (scores materialized, as its
forward already is uncompiled): torch refuses CPU backward at the entry (``_validate_device``) for want of a
compiled CPU kernel, and the worker lifts that check for itself."""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.attention.flex_attention as flex_api
from _worker import run_worker

from shardwise import flex
from shardwise.config import load_config
from shardwise.cp import gather_sequence
from shardwise.model import has_restarts
from shardwise.parallelize import apply_flex
from shardwise.run import Run, build_run
from shardwise.tp import Group
from shardwise.train import forward_backward
from shardwise.verify import full_copy, step_batches

flex_api._validate_device = lambda *tensors: None


def step(run: Run, probe, batches) -> dict[str, Any]:
    with torch.no_grad():
        logits = gather_sequence(full_copy(run.logits(probe)), Group.of(run.meshes.cp))
    loss = float(forward_backward(run, batches))
    grads = {n: full_copy(p.grad) for n, p in run.model.named_parameters()}
    run.optimizer.zero_grad()
    return {"logits": logits, "loss": loss, "grads": grads}


def compare(overrides: dict) -> dict[str, Any]:
    cfg = load_config(None, overrides)
    run = build_run(cfg)
    batches = step_batches(cfg, run.meshes.dp.get_local_rank(), run.layout.dp)(0)
    probe = run.local_batch(batches[0])
    calls = []
    attend = flex.flex_attention
    flex.flex_attention = lambda *a, **k: calls.append(1) or attend(*a, **k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex warns that uncompiled it materializes the scores
        dense = step(run, probe, batches)
        assert not calls
        apply_flex(run.model)
        flexed = step(run, probe, batches)
    packed = probe.packed if probe.packed is not None else has_restarts(probe.position_ids)  # None under cp=1
    return {"dense": dense, "flex": flexed, "calls": len(calls), "packed": packed}


if __name__ == "__main__":
    run_worker(compare)
