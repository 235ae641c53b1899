"""Python's cycle collector on a schedule: at the same step on every rank, with what setup built left out of it.

A full collection walks every object Python tracks. Once torch, transformers and compiled blocks are loaded that is
about 600k objects and a quarter of a second of host time (measured on CPU), and Python starts one by itself when
enough objects have survived, at a different step on each rank; the other ranks then wait for that one at their next
collective, so with many ranks some rank pauses nearly every step. ``Collector`` collects once after a process's first
step (compilation done), freezes what is alive then (``gc.freeze``: later collections skip it), turns automatic
collection off, and collects what the steps left every ``train.gc_every`` steps, on every rank at once. Reference
counting still frees at once everything that is not in a reference cycle.
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
