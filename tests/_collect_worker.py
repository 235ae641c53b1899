"""torchrun worker for ``tests/test_collect.py`` (``what`` picks the check):

- ``train``: ``shardwise.train.train`` with a collector that records, after each of its steps, whether Python collects
  by itself and whether setup's objects are frozen; then the collector's state after ``train`` returns;
- ``garbage``: what three training steps leave to the cycle collector (Python's own collector off, as between two
  scheduled collections), by type, and the tensors among it."""

from __future__ import annotations

import gc
from collections import Counter

import torch
from _worker import run_worker

from shardwise import train as training
from shardwise.bench import synthetic_batches
from shardwise.collect import Collector
from shardwise.config import load_config
from shardwise.run import build_run

SEEN: list[tuple[bool, bool]] = []


class Recording(Collector):
    def step(self) -> None:
        super().step()
        SEEN.append((gc.isenabled(), gc.get_freeze_count() > 0))


def train(overrides: dict) -> dict:
    training.Collector = Recording
    records = training.train(load_config(None, overrides))
    return {"steps": len(records), "seen": SEEN, "after": (gc.isenabled(), gc.get_freeze_count())}


def garbage(overrides: dict) -> dict:
    run = build_run(load_config(None, overrides))
    batches = synthetic_batches(run)
    collector = Collector(every=50)
    for _ in range(4):
        training.optimizer_step(run, training.forward_backward(run, batches))
        collector.step()  # the first: collect, freeze, stop collecting by itself
    gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection finds, to look at it
    found = gc.collect()
    gc.set_debug(0)
    result = {"found": found, "types": Counter(type(o).__name__ for o in gc.garbage),
              "tensors": [f"{type(o).__name__}{tuple(o.shape)}" for o in gc.garbage if isinstance(o, torch.Tensor)]}
    gc.garbage.clear()
    collector.close()
    return result


if __name__ == "__main__":
    run_worker(lambda overrides: {"train": train, "garbage": garbage}[overrides.pop("what")](overrides))
