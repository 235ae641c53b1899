"""torchrun worker: ``shardwise.train.train`` with a collector that records, after each of its steps, whether Python
collects by itself and whether setup's objects are frozen; then the collector's state after ``train`` returns."""

from __future__ import annotations

import gc

from _worker import run_worker

from shardwise import train as training
from shardwise.collect import Collector
from shardwise.config import load_config

SEEN: list[tuple[bool, bool]] = []


class Recording(Collector):
    def step(self) -> None:
        super().step()
        SEEN.append((gc.isenabled(), gc.get_freeze_count() > 0))


def train(overrides: dict) -> dict:
    training.Collector = Recording
    records = training.train(load_config(None, overrides))
    return {"steps": len(records), "seen": SEEN, "after": (gc.isenabled(), gc.get_freeze_count())}


if __name__ == "__main__":
    run_worker(train)
