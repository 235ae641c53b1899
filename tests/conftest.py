"""Test helpers: run a script in several CPU processes (gloo) through torchrun, or the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))


def torchrun(nproc: int, target: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``tests/<target>`` (a ``.py`` file) or the module ``target`` on ``nproc`` local CPU processes;
    fail the test with its output on error."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""}
    entry = [str(TESTS / target)] if target.endswith(".py") else ["--module", target]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *entry, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{target} failed on {nproc} processes:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def shardwise(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``shardwise ARGS`` on CPU in a subprocess (it starts its own gloo processes); fail on error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "shardwise.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"shardwise {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc
