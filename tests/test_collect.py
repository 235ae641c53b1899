"""``shardwise.collect``: garbage collected on a schedule, setup's objects left out, Python's own collector put back;
the training loop and ``shardwise bench`` collect between steps."""

from __future__ import annotations

import gc
import json
import weakref
from types import SimpleNamespace

import pytest
import torch
from conftest import torchrun

from shardwise import bench
from shardwise.collect import Collector


class Cyclic:
    """An object in a reference cycle: only the cycle collector frees it."""

    def __init__(self, freed: list[str], name: str) -> None:
        self.me = self
        weakref.finalize(self, freed.append, name)


@pytest.fixture
def python_gc():
    """Python's collector as the test found it, whatever the test leaves."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_collects_on_schedule_with_setup_left_out(python_gc):
    freed: list[str] = []
    Cyclic(freed, "before")
    collector = Collector(every=3)
    collector.step()  # the first step: collect, freeze what is alive, stop collecting by itself
    assert freed == ["before"] and not gc.isenabled() and gc.get_freeze_count() > 0
    Cyclic(freed, "step 2")
    for _ in range(10_000):  # far past the allocations after which Python would collect by itself
        Cyclic(freed, "young")
    collector.step()
    assert freed == ["before"]
    collector.step()  # step 3
    assert "step 2" in freed and len(freed) == 10_002
    collector.close()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_zero_leaves_python_its_own_collector(python_gc):
    collector = Collector(every=0)
    for _ in range(3):
        collector.step()
    collector.close()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_close_keeps_a_collector_that_was_off_off(python_gc):
    gc.disable()
    collector = Collector(every=2)
    collector.step()
    collector.close()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_bench_collects_between_steps_and_times_only_the_steps(monkeypatch, python_gc):
    calls: list[str] = []

    class Recording(Collector):
        def step(self) -> None:
            calls.append("collect")

        def close(self) -> None:
            calls.append("close")

    times = iter([5.0, 6.0, 1.0, 2.0, 3.0])
    monkeypatch.setattr(bench, "Collector", Recording)
    monkeypatch.setattr(bench, "synthetic_batches", lambda run: [])
    monkeypatch.setattr(bench, "timed_step", lambda run, batches: calls.append("step") or next(times))
    monkeypatch.setattr(bench, "slowest_rank", lambda t, device: t)
    cfg = SimpleNamespace(train=SimpleNamespace(gc_every=50), bench=SimpleNamespace(warmup=2, steps=3))
    assert bench.measure(SimpleNamespace(cfg=cfg, device=torch.device("cpu"))) == [1.0, 2.0, 3.0]
    assert calls == ["step", "collect"] * 5 + ["close"]


def test_training_collects_every_n_steps(tmp_path):
    """``train`` on one CPU process, 5 steps, ``train.gc_every=2``: from the first step on, Python does not collect by
    itself and setup's objects are frozen; when ``train`` returns, both are as before."""
    out = tmp_path / "results.pt"
    overrides = {"model.preset": "tiny-qwen2", "parallel.tp": 1, "parallel.dp_shard": 1, "train.steps": 5,
                 "train.seq_len": 32, "train.global_batch_size": 2, "train.micro_batch_size": 2,
                 "train.eval_every": 0, "train.gc_every": 2, "data.max_bytes": 100000,
                 "output.dir": str(tmp_path / "run"), "output.progress": False}
    torchrun(1, "_collect_worker.py", "--overrides", json.dumps({"what": "train", **overrides}), "--out", str(out))
    r = torch.load(out)
    assert r["steps"] == 5 and r["seen"] == [(False, True)] * 5
    assert r["after"] == (True, 0)


def test_steps_leave_the_collector_no_tensors(tmp_path):
    """What waits for the next scheduled collection holds no tensor, so collecting every 50 steps costs no device
    memory: three steps of ``dp_shard=2 x tp=2`` (FSDP over DTensor TP, sequence and loss parallelism) with full
    checkpointing leave cycles of closures and tuples only."""
    out = tmp_path / "results.pt"
    overrides = {"what": "garbage", "model.preset": "tiny-qwen2", "parallel.tp": 2, "parallel.dp_shard": 2,
                 "train.seq_len": 64, "train.global_batch_size": 4, "train.micro_batch_size": 1,
                 "train.activation_checkpointing": "full", "train.dtype": "float32"}
    torchrun(4, "_collect_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    r = torch.load(out)
    assert r["found"] > 0  # the probe sees the steps' cycles (so it would see a tensor among them)
    assert r["tensors"] == [], r["types"].most_common(10)
