"""Checkpoints: an interrupted and resumed run equals an uninterrupted one, on the same or another layout.

One uninterrupted 6-step run on dp_shard=2 x tp=2 saves step-3 and step-6. An interrupted run is
then staged from its step-3 checkpoint exactly as a crash at step 4 leaves it: the checkpoint, the
metrics of steps 1-4 (the last line cut short) and a ``.step-4.tmp`` folder whose save never
finished, marker included. Resumed with ``--checkpoint.resume=auto`` it must log the same losses
and end with the same weights and optimizer state; resumed on another layout, the same losses to
float rounding.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import shardwise
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from shardwise.cli import main

RUN = ["--train.seq_len=32", "--train.global_batch_size=4", "--train.micro_batch_size=2", "--data.max_bytes=100000",
       "--train.steps=6", "--train.lr=1e-2", "--train.warmup_steps=2", "--train.dtype=float32",
       "--output.progress=false"]
LAYOUT_2X2 = ["--parallel.dp_shard=2", "--parallel.tp=2"]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def full_state(ckpt: Path, scratch: Path) -> dict:
    """Every tensor of a checkpoint gathered to full size (DCP's own converter), whatever layout wrote it."""
    dcp_to_torch_save(ckpt, scratch / f"{ckpt.parent.parent.name}-{ckpt.name}.pt")
    return torch.load(scratch / f"{ckpt.parent.parent.name}-{ckpt.name}.pt")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    shardwise("train", *RUN, *LAYOUT_2X2, "--checkpoint.every=3", f"--output.dir={out}")
    return out


@pytest.fixture(scope="module")
def resumed(uninterrupted, tmp_path_factory) -> Path:
    """The crash state described above, then ``resume=auto`` saving every step with keep=2."""
    out = tmp_path_factory.mktemp("resumed")
    ckpts = out / "checkpoints"
    shutil.copytree(uninterrupted / "checkpoints" / "step-3", ckpts / "step-3")
    crashed = ckpts / ".step-4.tmp"
    shutil.copytree(uninterrupted / "checkpoints" / "step-3", crashed)
    (crashed / ".metadata").write_bytes(b"cut short")
    (crashed / "shardwise.json").write_text(json.dumps({"step": 4}))
    lines = (uninterrupted / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    shardwise("train", *RUN, *LAYOUT_2X2, "--checkpoint.resume=auto", "--checkpoint.every=1",
              f"--output.dir={out}")
    return out


def test_resume_equals_uninterrupted(uninterrupted, resumed, tmp_path):
    """Same losses at every step, bit for bit, and the same final weights and Adam moments."""
    assert [r["step"] for r in metrics(resumed)] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in metrics(resumed)] == [r["loss"] for r in metrics(uninterrupted)]
    assert [r["lr"] for r in metrics(resumed)] == [r["lr"] for r in metrics(uninterrupted)]
    got = full_state(resumed / "checkpoints" / "step-6", tmp_path)
    ref = full_state(uninterrupted / "checkpoints" / "step-6", tmp_path)
    assert got["step"] == ref["step"] == 6 and got["scheduler"] == ref["scheduler"]
    assert set(got["model"]) == set(ref["model"])
    for name, tensor in ref["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    for name, state in ref["optim"]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(got["optim"]["state"][name][key], tensor), f"{name}.{key}"


def test_keeps_newest_complete_checkpoints_and_clears_crashed_saves(resumed):
    """keep=2 after saving steps 4, 5, 6: only step-5 and step-6; the crashed .step-4.tmp is gone."""
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-5", "step-6"]
    files = {p.name for p in (resumed / "checkpoints" / "step-6").iterdir()}
    assert {".metadata", "shardwise.json", "config.json", "tokenizer.json"} <= files
    assert {f"rng-rank{r}.pt" for r in range(4)} <= files
    meta = json.loads((resumed / "checkpoints" / "step-6" / "shardwise.json").read_text())
    assert meta["step"] == 6 and meta["mesh"] == {"dp_replicate": 1, "dp_shard": 2, "tp": 2}


def test_resume_on_another_layout(uninterrupted, tmp_path):
    """dp_shard=2 x tp=2 -> dp_shard=2 x tp=1: DCP reshards model and optimizer; losses continue."""
    out = tmp_path / "other-layout"
    shardwise("train", *RUN, "--parallel.dp_shard=2", "--parallel.tp=1",
              f"--checkpoint.resume={uninterrupted / 'checkpoints' / 'step-3'}", f"--output.dir={out}")
    got, ref = metrics(out), metrics(uninterrupted)
    assert [r["step"] for r in got] == [4, 5, 6]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in ref[3:]], rel=1e-4)
    weights = full_state(out / "checkpoints" / "step-6", tmp_path)["model"]
    ref_weights = full_state(uninterrupted / "checkpoints" / "step-6", tmp_path)["model"]
    worst = max(ref_weights, key=lambda n: rel_err(weights[n], ref_weights[n]))
    assert rel_err(weights[worst], ref_weights[worst]) < 1e-3, worst


@pytest.mark.parametrize("extra,message", [
    ([], ("already has checkpoints (newest step-6); pass --checkpoint.resume=auto to continue, "
          "or choose another output.dir")),
    (["--checkpoint.resume={ckpts}/step-3"], "is older than"),
    (["--checkpoint.resume=/nonexistent/step-9"],
     "checkpoint.resume=/nonexistent/step-9: not a complete shardwise checkpoint"),
    (["--checkpoint.resume=auto", "--model.preset=tiny-llama"],
     "holds another model (model_type 'qwen2', not 'llama')"),
])
def test_refusals_are_one_line_and_delete_nothing(uninterrupted, extra, message, capsys):
    """A fresh run never overwrites checkpoints; bad resume targets fail before any process starts."""
    ckpts = uninterrupted / "checkpoints"
    before = sorted(p.name for p in ckpts.iterdir())
    extra = [e.format(ckpts=ckpts) for e in extra]
    assert main(["train", *RUN, *LAYOUT_2X2, f"--output.dir={uninterrupted}", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in ckpts.iterdir()) == before
