"""Python's cycle collector on a schedule: at the same step on every rank, with what setup built left out of it.

A full collection walks every object Python tracks. Once torch, transformers and compiled blocks are loaded that is
about 600k objects and 0.25-0.4 s of host time, and Python starts one by itself when enough objects have survived, at a
different step on each rank; the other ranks then wait for that one at their next collective (2xH200, tp=2: steps of
0.6 s among 0.37 s ones; BENCHMARKS.md, session 30), so with many ranks some rank would pause nearly every step.
``Collector`` collects once after a process's first step (compilation done), freezes what is alive then
(``gc.freeze``: later collections skip it), turns automatic collection off, and collects what the steps left every
``train.gc_every`` steps, on every rank at once. Reference counting still frees at once everything that is not in a
reference cycle.
"""

from __future__ import annotations

import gc


class Collector:
    """``step()`` after each optimizer step (0 for ``every``: Python's own schedule); ``close()`` puts Python's back."""

    def __init__(self, every: int) -> None:
        self.every, self.steps, self.was_enabled = every, 0, gc.isenabled()

    def step(self) -> None:
        if not self.every:
            return
        self.steps += 1
        if self.steps == 1:
            gc.collect()
            gc.freeze()
            gc.disable()
        elif self.steps % self.every == 0:
            gc.collect()

    def close(self) -> None:
        if self.every and self.steps:
            gc.unfreeze()
            if self.was_enabled:
                gc.enable()
