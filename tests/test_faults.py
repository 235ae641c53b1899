"""What the cluster does to jobs, injected on CPU/gloo (``SHARDWISE_FAULT``, see ``shardwise.inject``).

Every run is the reference run of ``conftest`` (tiny-qwen2, dp_shard=2 x tp=2, 6 steps, checkpoints
at 3 and 6) or a smaller one, with one fault: preemption (SIGTERM to the launcher), a worker killed
with SIGKILL under ``--max-restarts=1``, one that crashes (SIGSEGV), NaN and inf at chosen steps
(stop and skip), a rank that stops responding, and the same job as two torchrun "nodes" on this
machine resuming from a checkpoint whose newest copy is damaged. Runs that recover must log the reference's losses and
end with its weights and Adam state, bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LAYOUT_2X2, RUN, assert_same_training_state, full_state, metrics, run_cli

from shardwise.faults import HUNG_EXIT, NONFINITE_EXIT, PREEMPTED_EXIT, StopSignals, nonfinite
from shardwise.inject import parse

TWO_PROCESSES = ["--parallel.dp_shard=2", "--parallel.tp=1"]


def fault(spec: str) -> dict[str, str]:
    return {"SHARDWISE_FAULT": spec}


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in metrics(out)]


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("shardwise: ")]


def test_preemption_saves_then_resumes_exactly(uninterrupted, tmp_path):
    """SIGTERM to the launcher mid-run: every rank finishes its step, one checkpoint, exit 75; resume equals no stop."""
    out = tmp_path / "out"
    proc = run_cli("train", *RUN, *LAYOUT_2X2, "--checkpoint.every=3", f"--output.dir={out}", env=fault("preempt@3"))
    assert proc.returncode == PREEMPTED_EXIT, proc.stderr[-3000:]
    (line,) = errors(proc)
    stopped = re.fullmatch(r"shardwise: SIGTERM received: stopped after step (\d) and saved (\S+); "
                           r"continue with --checkpoint.resume=auto", line)
    assert stopped, line
    step = int(stopped.group(1))
    assert 3 <= step < 6 and Path(stopped.group(2)) == out / "checkpoints" / f"step-{step}"
    assert [r["step"] for r in metrics(out)] == list(range(1, step + 1))
    resumed = run_cli("train", *RUN, *LAYOUT_2X2, "--checkpoint.every=3", "--checkpoint.resume=auto",
                      f"--output.dir={out}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses(out) == losses(uninterrupted)
    assert_same_training_state(full_state(out / "checkpoints" / "step-6", tmp_path),
                               full_state(uninterrupted / "checkpoints" / "step-6", tmp_path))


def test_killed_worker_restarts_the_group_from_the_newest_checkpoint(uninterrupted, tmp_path):
    """kill -9 of rank 1 in step 5, ``--max-restarts=1``: the group restarts, resumes step-3, ends as the reference."""
    out = tmp_path / "out"
    proc = run_cli("train", *RUN, *LAYOUT_2X2, "--checkpoint.every=3", "--max-restarts=1", f"--output.dir={out}",
                   env=fault("kill@5:1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a collective failed in step 5" in proc.stderr  # the survivors saw their peer die
    assert losses(out) == losses(uninterrupted)
    assert_same_training_state(full_state(out / "checkpoints" / "step-6", tmp_path),
                               full_state(uninterrupted / "checkpoints" / "step-6", tmp_path))


def test_crashed_worker_is_named_not_its_peers(tmp_path):
    """A worker that dies of SIGSEGV mid-step (a native library's fault; a gloo thread did so once): its peers stop on
    their own ("another rank died or hung"), and the launcher's last line names the crashed worker and its signal,
    exit 128 + 11, instead of passing on the peers' exit code as the cause."""
    out = tmp_path / "out"
    proc = run_cli("train", *RUN, *TWO_PROCESSES, f"--output.dir={out}", env=fault("crash@2:1"))
    assert proc.returncode == 128 + signal.SIGSEGV, proc.stderr[-3000:]
    assert errors(proc)[-1] == ("shardwise: error: worker 1 died of SIGSEGV (its output above, if any, says why); "
                                "the other workers stopped because of it")


def test_nonfinite_loss_stops_with_the_step_and_the_check(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("train", *RUN, *TWO_PROCESSES, f"--output.dir={out}", env=fault("nan@2:1"))
    assert proc.returncode == NONFINITE_EXIT, proc.stderr[-3000:]
    assert errors(proc) == [
        ("shardwise: error: step 2: non-finite loss (nan) before the optimizer step; stopped without updating the "
         "weights (train.on_nonfinite=stop); continue from the newest checkpoint with --checkpoint.resume=auto, or "
         "set train.on_nonfinite=skip")]
    assert [r["step"] for r in metrics(out)] == [1]


def test_skip_leaves_weights_and_optimizer_untouched(tmp_path):
    """A NaN loss at step 2 and an inf gradient on rank 3 at step 4: exactly those two steps change nothing."""
    out = tmp_path / "out"
    proc = run_cli("train", *RUN, *LAYOUT_2X2, "--train.on_nonfinite=skip", "--checkpoint.every=1",
                   "--checkpoint.keep=6", f"--output.dir={out}", env=fault("nan@2,inf-grad@4:3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = [re.match(r"shardwise: warning: step (\d): (non-finite [a-z ]+) \(", e) for e in errors(proc)]
    assert [(int(w.group(1)), w.group(2)) for w in warned] == [(2, "non-finite loss"), (4, "non-finite gradient norm")]
    assert [r["skipped_steps"] for r in metrics(out)] == [0, 1, 1, 2, 2, 2]
    assert json.loads((out / "summary.json").read_text())["skipped_steps"] == 2
    state = {s: full_state(out / "checkpoints" / f"step-{s}", tmp_path) for s in range(1, 7)}
    for skipped in (2, 4):
        before, after = state[skipped - 1], state[skipped]
        assert before["model"].keys() == after["model"].keys()
        assert all(after["model"][n].equal(t) for n, t in before["model"].items())
        assert all(after["optim"]["state"][n][k].equal(t) for n, s in before["optim"]["state"].items()
                   for k, t in s.items())
    assert not all(state[3]["model"][n].equal(t) for n, t in state[2]["model"].items())  # step 3 trained
    assert [math.isfinite(loss) for loss in losses(out)] == [True, False, True, True, True, True]


def test_stalled_rank_ends_the_job_naming_rank_and_step(tmp_path):
    """Rank 1 stops responding in step 2: within parallel.timeout_s both ranks say so, exit 4."""
    proc = run_cli("train", *RUN, *TWO_PROCESSES, "--parallel.timeout_s=3", f"--output.dir={tmp_path / 'out'}",
                   env=fault("hang@2:1"), timeout=300)
    assert proc.returncode == HUNG_EXIT, proc.stderr[-3000:]
    for rank in (0, 1):
        assert any(re.match(rf"shardwise: error: rank {rank}: .*step 2", e) for e in errors(proc)), proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_resume_past_a_damaged_checkpoint_like_one_node(uninterrupted, tmp_path):
    """Two torchrun "nodes" of 2 processes (c10d rendezvous on localhost), tokenizing into one shared fresh cache:
    rank 3 finds its shard of step-6 damaged, all ranks fall back to step-3, and steps 4-6 equal the 1-node run."""
    out = tmp_path / "out"
    for step in (3, 6):
        shutil.copytree(uninterrupted / "checkpoints" / f"step-{step}", out / "checkpoints" / f"step-{step}")
    shutil.copy(uninterrupted / "metrics.jsonl", out / "metrics.jsonl")
    shard = out / "checkpoints" / "step-6" / "__3_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=2", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=localhost:{port}", "-m", "shardwise.cli", "train", *RUN, *LAYOUT_2X2,
           "--checkpoint.every=3", "--checkpoint.resume=auto", f"--data.cache_dir={tmp_path / 'cache'}",
           f"--output.dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    nodes = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(err[-3000:] for _, err in outputs)
    stderr = "".join(err for _, err in outputs)
    assert f"checkpoint {out / 'checkpoints' / 'step-6'} is damaged (__3_0.distcp does not match its checksum)" in stderr
    assert (out / "checkpoints" / "step-6.damaged").is_dir()
    assert losses(out) == losses(uninterrupted)
    assert_same_training_state(full_state(out / "checkpoints" / "step-6", tmp_path),
                               full_state(uninterrupted / "checkpoints" / "step-6", tmp_path))


def test_nonfinite_names_the_first_failed_check():
    assert nonfinite(1.0, 2.0) is None
    assert nonfinite(float("nan"), float("inf")) == "non-finite loss (nan)"
    assert nonfinite(1.0, float("inf")) == "non-finite gradient norm (inf)"


def test_stop_signals_record_the_first_and_restore_handlers():
    """The handler only records (the step finishes); closing puts the previous handlers back."""
    before = signal.getsignal(signal.SIGUSR1)
    signals = StopSignals([signal.SIGUSR1, signal.SIGUSR2], device=None)
    os.kill(os.getpid(), signal.SIGUSR2)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert signals.received == signal.SIGUSR2
    signals.close()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_fault_spec_is_checked():
    assert parse("nan@3, kill@5:1") == [("nan", 3, 0), ("kill", 5, 1)]
    with pytest.raises(ValueError, match="is not KIND@STEP"):
        parse("nan3")
