"""Test hook: ``SHARDWISE_FAULT`` makes a training run fail on purpose, to prove README "Faults".

Read here and nowhere else; unset (always, outside tests and fault drills) it does nothing.
``SHARDWISE_FAULT=KIND@STEP[:RANK][,KIND@STEP[:RANK]...]`` (RANK defaults to 0) acts in step STEP
(1-based) after its backward, before its optimizer step:

- ``nan``: the step's loss becomes NaN in every rank (it is a global value) and one gradient of
  RANK becomes NaN, as after an overflow in the forward;
- ``inf-grad``: one gradient of RANK becomes inf, as after an overflow in the backward;
- ``kill``: RANK kills itself with SIGKILL, in the first attempt only (``TORCHELASTIC_RESTART_COUNT``
  unset or 0), so a restarted group runs through;
- ``crash``: RANK dies of SIGSEGV, as a native library's fault kills a process (every attempt);
- ``hang``: RANK stops responding (sleeps for good);
- ``preempt``: RANK sends the first signal of ``checkpoint.on_signal`` (SIGTERM by default) to its
  parent, the launcher, as a scheduler preempting the job does.
"""

from __future__ import annotations

import os
import signal
import time

import torch
import torch.distributed as dist

from shardwise.config import ConfigError, parse_signals
from shardwise.run import Run
from shardwise.tp import local_tensor

KINDS = ("nan", "inf-grad", "kill", "crash", "hang", "preempt")


def parse(spec: str) -> list[tuple[str, int, int]]:
    """``"nan@3,kill@5:1"`` -> ``[("nan", 3, 0), ("kill", 5, 1)]``."""
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, where = item.partition("@")
        step, _, rank = where.partition(":")
        if kind not in KINDS or not step.isdigit() or not (rank or "0").isdigit():
            raise ConfigError(f"SHARDWISE_FAULT={spec!r}: {item!r} is not KIND@STEP[:RANK] with KIND one of "
                              f"{', '.join(KINDS)}")
        faults.append((kind, int(step), int(rank or 0)))
    return faults


def mid_step(run: Run, step: int, loss: torch.Tensor) -> torch.Tensor:
    """Apply the faults of ``step`` to this rank; returns the step's loss, NaN'd by ``nan``."""
    for kind, at, rank in parse(os.environ.get("SHARDWISE_FAULT", "")):
        if at != step:
            continue
        if kind == "nan":
            loss = torch.full_like(loss, float("nan"))
        if dist.get_rank() == rank:
            _act(run, kind)
    return loss


def _act(run: Run, kind: str) -> None:
    if kind in ("nan", "inf-grad"):
        grads = (local_tensor(p.grad) for p in run.model.parameters() if p.grad is not None)
        with torch.no_grad():
            next(g for g in grads if g.numel()).view(-1)[0] = float("nan" if kind == "nan" else "inf")
    elif kind == "kill" and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "crash":
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)  # past faulthandler, if enabled: the default action
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "preempt":
        os.kill(os.getppid(), (parse_signals(run.cfg.checkpoint.on_signal) or [signal.SIGTERM])[0])
