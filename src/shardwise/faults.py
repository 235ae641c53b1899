"""What a run does when its cluster misbehaves: preemption signals, hung ranks, non-finite steps.

Each way a run ends on purpose has its own exit code, so a job script can tell them apart
(``CONFIG_ERROR_EXIT`` = 2, a bad input, is ``shardwise.launch``'s):

- ``NONFINITE_EXIT`` (3): a step's loss or gradient norm was not finite (``train.on_nonfinite=stop``);
- ``HUNG_EXIT`` (4): a step, save or evaluation did not finish within ``parallel.timeout_s``, or a
  collective failed (a rank hung, died or lost its network);
- ``SAVE_FAILED_EXIT`` (5): a checkpoint could not be written (a full disk); older ones are intact;
- ``PREEMPTED_EXIT`` (75, ``EX_TEMPFAIL`` of sysexits.h: try again later): a ``checkpoint.on_signal``
  signal arrived; the step finished and a checkpoint was saved.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

import torch
import torch.distributed as dist

NONFINITE_EXIT = 3
HUNG_EXIT = 4
SAVE_FAILED_EXIT = 5
PREEMPTED_EXIT = 75


class Stop(Exception):
    """Ends the run on purpose, in every rank at once: rank 0 prints ``shardwise: MESSAGE``, all exit ``code``."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class StopSignals:
    """Catch ``checkpoint.on_signal`` signals; once per step, let all ranks agree whether one arrived.

    The handler only records the signal, so the step under way finishes. ``agreed`` all-reduces it
    (the maximum signal number over the world), so every rank stops after the same step, whichever
    ranks the signal reached: a scheduler may signal every process, or only the launcher, which
    forwards it to its workers.
    """

    def __init__(self, signals: list[signal.Signals], device: torch.device | None, grace_s: int = 0):
        self.device, self.grace_s = device, grace_s
        self.received = 0
        self.previous = {sig: signal.signal(sig, self._record) for sig in signals}
        self.warned = False

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum

    def agreed(self) -> signal.Signals | None:
        """The signal some rank received (the same on every rank), or None; a collective unless none is caught."""
        if not self.previous:  # checkpoint.on_signal is empty, in every rank alike
            return None
        flag = torch.tensor([self.received], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        received = int(flag.item())
        return signal.Signals(received) if received else None

    def fits(self, seconds: float) -> None:
        """Warn once (rank 0) when a step and its save took longer than the launcher waits after a signal."""
        if self.previous and seconds > self.grace_s and not self.warned and dist.get_rank() == 0:
            print(f"shardwise: warning: a step and its checkpoint took {seconds:.0f} s, longer than the "
                  f"checkpoint.shutdown_timeout_s={self.grace_s} s a launcher waits after a preemption signal before "
                  "SIGKILL; raise it (and torchrun's --shutdown-timeout, and the scheduler's grace time)",
                  file=sys.stderr, flush=True)
            self.warned = True

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Watchdog:
    """A thread that ends this process when one phase of the loop runs longer than ``parallel.timeout_s``.

    A rank waiting in a collective for a rank that hung never returns (NCCL), or only after the
    process group's timeout with a message that names no step (gloo). The watchdog speaks first,
    one line naming this rank and the phase (``step 7``, ``saving step 7``, ...), then exits with
    ``HUNG_EXIT`` without unwinding: a rank stuck in a collective cannot leave it cleanly.
    """

    def __init__(self, timeout_s: int, rank: int):
        self.timeout_s, self.rank = timeout_s, rank
        self._phase: tuple[str, float] | None = None
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="shardwise-watchdog", daemon=True).start()

    def phase(self, what: str | None) -> None:
        """Start timing ``what``; None stops watching (between phases that may legitimately wait)."""
        self._phase = (what, time.monotonic()) if what else None

    def close(self) -> None:
        self._closed.set()

    def _watch(self) -> None:
        while not self._closed.wait(min(1.0, self.timeout_s / 4)):
            current = self._phase
            if current and time.monotonic() - current[1] > self.timeout_s:
                self._exit(f"{current[0]} did not finish within parallel.timeout_s={self.timeout_s} s: a collective "
                           "is waiting for a rank that hung or died (raise parallel.timeout_s if it is just slow)")

    def broken(self, err: Exception) -> NoReturn:
        """A collective raised in the phase under way (a peer died, or the process group timed out)."""
        line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        detail = re.sub(r"^\[[^\]]*\]\s*", "", line).split(". ")[0]  # gloo: "[path/pair.cc:553] Connection closed..."
        self._exit(f"a collective failed in {self._phase[0] if self._phase else 'training'}: "
                   f"another rank died or hung ({detail})")

    def _exit(self, message: str) -> NoReturn:
        """Every rank says it (``say_line``), then ends."""
        say_line(f"shardwise: error: rank {self.rank}: {message}; stopping")
        os._exit(HUNG_EXIT)


def say_line(line: str) -> None:
    """``line`` on stderr in one write, for what every rank says at once: ``print`` writes the text and its newline
    apart, and two ranks sharing the launcher's stderr could end up on one line."""
    sys.stderr.flush()
    try:
        os.write(sys.stderr.fileno(), f"{line}\n".encode())
    except (AttributeError, OSError):  # a stderr without a file descriptor (io.UnsupportedOperation)
        print(line, file=sys.stderr, flush=True)


def nonfinite(loss: float, grad_norm: float) -> str | None:
    """The first check a step fails, in the order they are computed, or None.

    Both values are global (reduced over the ranks), so every rank reaches the same verdict.
    """
    if not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    if not math.isfinite(grad_norm):
        return f"non-finite gradient norm ({grad_norm})"
    return None
