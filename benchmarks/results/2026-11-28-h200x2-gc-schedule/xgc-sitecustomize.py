"""Experiment hook (device call 126): log every cycle collection of 10 ms or more, with its generation, per rank."""
import gc
import os
import sys
import time

_t = [0.0]


def _log(phase, info):
    if phase == "start":
        _t[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _t[0]) * 1e3
    if ms >= 10:
        print(f"[x-gc] rank {os.environ.get('RANK', '?')} gen {info['generation']} {ms:.1f} ms "
              f"collected {info['collected']} frozen {gc.get_freeze_count()}", file=sys.stderr, flush=True)


gc.callbacks.append(_log)
