"""Test helpers: run a script in several CPU processes (gloo) through torchrun, or the CLI; and one
uninterrupted reference run that the checkpoint and fault tests compare against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))


def torchrun(nproc: int, target: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``tests/<target>`` (a ``.py`` file) or the module ``target`` on ``nproc`` local CPU processes;
    fail the test with its output on error."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""}
    entry = [str(TESTS / target)] if target.endswith(".py") else ["--module", target]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *entry, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{target} failed on {nproc} processes:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def compiled_step(tmp_path: Path, overrides: dict) -> dict:
    """``_compile_worker``'s compiled and eager step of ``overrides`` on 2 processes, checked for one graph without
    breaks and for the eager loss (1e-6) and gradients; its results."""
    out = tmp_path / "results.pt"
    torchrun(2, "_compile_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    r = torch.load(out)
    assert r["graphs"] == 1 and r["breaks"] == 0
    assert r["compiled"]["loss"] == pytest.approx(r["eager"]["loss"], rel=1e-6)
    for name, grad in r["eager"]["grads"].items():
        torch.testing.assert_close(r["compiled"]["grads"][name], grad, rtol=1e-5, atol=1e-7, msg=name)
    return r


def assert_same_steps(got: dict, want: dict) -> None:
    """Two ``_worker.train_steps`` results equal bit for bit: every step's loss and gradients, the final weights."""
    assert got["losses"] == want["losses"]
    for step, (mine, theirs) in enumerate(zip(got["grads"], want["grads"], strict=True)):
        for name, grad in theirs.items():
            assert torch.equal(mine[name], grad), f"step {step + 1} gradient of {name}"
    for name, weight in want["weights"].items():
        assert torch.equal(got["weights"][name], weight), name


def shardwise(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``shardwise ARGS`` on CPU in a subprocess (it starts its own gloo processes); fail on error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "shardwise.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"shardwise {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``shardwise ARGS`` on CPU in a subprocess, whatever its exit code (for runs that stop on purpose)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "shardwise.cli", *args], check=False, env=env, capture_output=True,
                          text=True, timeout=timeout)


# The reference run: 6 steps of tiny-qwen2 on dp_shard=2 x tp=2, fp32, checkpoints at steps 3 and 6.
RUN = ["--train.seq_len=32", "--train.global_batch_size=4", "--train.micro_batch_size=2", "--data.max_bytes=100000",
       "--train.steps=6", "--train.lr=1e-2", "--train.warmup_steps=2", "--train.dtype=float32",
       "--output.progress=false"]
LAYOUT_2X2 = ["--parallel.dp_shard=2", "--parallel.tp=2"]


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference run's output.dir; tests copy from it and never change it."""
    out = tmp_path_factory.mktemp("uninterrupted")
    shardwise("train", *RUN, *LAYOUT_2X2, "--checkpoint.every=3", f"--output.dir={out}")
    return out


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def full_state(ckpt: Path, scratch: Path) -> dict:
    """Every tensor of a checkpoint gathered to full size (DCP's own converter), whatever layout wrote it."""
    target = scratch / f"{ckpt.parent.parent.name}-{ckpt.name}.pt"
    dcp_to_torch_save(ckpt, target)
    return torch.load(target, weights_only=False)  # written just now by this test, from a checkpoint it made


def assert_same_training_state(got: dict, ref: dict) -> None:
    """Bit-identical weights, Adam moments and step counts, and the same LR schedule."""
    assert got["scheduler"] == ref["scheduler"]
    assert set(got["model"]) == set(ref["model"])
    for name, tensor in ref["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    for name, state in ref["optim"]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(got["optim"]["state"][name][key], tensor), f"{name}.{key}"
