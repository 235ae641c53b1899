"""Run under torchrun: two steps of an FSDP layout with several micro-batches per rank, counting FSDP's all-gathers
(the profiler's ``FSDP::all_gather`` ranges), as the trainer runs them and with every unit resharded after each
backward; rank 0 saves both runs' counts, losses, gradients and weights."""

from __future__ import annotations

from typing import Any
from unittest import mock

from _worker import run_worker, train_steps
from torch.profiler import ProfilerActivity, profile

from shardwise import parallelize, train
from shardwise.config import load_config
from shardwise.run import build_run


def is_gather(name: str) -> bool:
    return name == "FSDP::all_gather" or name.startswith("FSDP::all_gather (")


def resharding(model: Any, last: bool, *, keep_gathered: bool, defer_grad_reduce: bool) -> None:
    """``prepare_micro_batch`` as if blocks were not kept gathered across micro-batches: FSDP's own default."""
    parallelize.prepare_micro_batch(model, last, keep_gathered=False, defer_grad_reduce=defer_grad_reduce)


def two_steps(overrides: dict[str, Any], keep: bool) -> dict[str, Any]:
    run = build_run(load_config(None, overrides))
    with mock.patch.object(train, "prepare_micro_batch", parallelize.prepare_micro_batch if keep else resharding), \
            profile(activities=[ProfilerActivity.CPU]) as prof:
        out = train_steps(run)
    per_step = sum(is_gather(e.name) for e in prof.events()) / len(out["losses"])
    return {"units": 1 + len(run.model.layers), **out, "gathers": per_step}


def compare(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"kept": two_steps(overrides, True), "resharded": two_steps(overrides, False)}


if __name__ == "__main__":
    run_worker(compare)
