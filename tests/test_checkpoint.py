"""Checkpoints: an interrupted and resumed run equals an uninterrupted one, on the same or another layout.

One uninterrupted 6-step run on dp_shard=2 x tp=2 saves step-3 and step-6. An interrupted run is
then staged from its step-3 checkpoint exactly as a crash at step 4 leaves it: the checkpoint, the
metrics of steps 1-4 (the last line cut short) and a ``.step-4.tmp`` folder whose save never
finished, marker included. Resumed with ``--checkpoint.resume=auto`` it must log the same losses
and end with the same weights and optimizer state; resumed on another layout (context parallel,
without TP), the same losses to float rounding. In this process, as the only rank: damaged
checkpoints are set aside for older ones, a save that fails keeps the older checkpoints, a tied
model's checkpoint whose head trained apart is refused (and exported untied), and ``output.dir`` is
checked before training.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import LAYOUT_2X2, RUN, assert_same_training_state, full_state, metrics, shardwise
from transformers import AutoModelForCausalLM

from shardwise import checkpoint
from shardwise import model as model_module
from shardwise.bench import synthetic_batches
from shardwise.checkpoint import checkpoints_root, complete_checkpoints
from shardwise.cli import main
from shardwise.config import ConfigError, load_config
from shardwise.data import byte_tokenizer
from shardwise.faults import SAVE_FAILED_EXIT, Stop
from shardwise.run import Run, build_run
from shardwise.train import forward_backward, optimizer_step


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


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
    assert got["step"] == ref["step"] == 6
    assert_same_training_state(got, ref)


def test_keeps_newest_complete_checkpoints_and_clears_crashed_saves(resumed):
    """keep=2 after saving steps 4, 5, 6: only step-5 and step-6; the crashed .step-4.tmp is gone."""
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-5", "step-6"]
    files = {p.name for p in (resumed / "checkpoints" / "step-6").iterdir()}
    assert {".metadata", "shardwise.json", "config.json", "tokenizer.json"} <= files
    assert {f"rng-rank{r}.pt" for r in range(4)} <= files
    meta = json.loads((resumed / "checkpoints" / "step-6" / "shardwise.json").read_text())
    assert meta["step"] == 6 and meta["mesh"] == {"dp_replicate": 1, "dp_shard": 2, "cp": 1, "tp": 2}


@pytest.mark.parametrize("layout", [
    ["--parallel.dp_shard=1", "--parallel.cp=2", "--parallel.tp=1"],
    [*LAYOUT_2X2, "--parallel.tp_attention=sequences"],
], ids=["cp2", "dp2xtp2-attention-per-sequence"])
def test_resume_on_another_layout(uninterrupted, tmp_path, layout):
    """dp_shard=2 x tp=2 -> cp=2 (each sequence split over 2 ranks, FSDP over them, no TP), or -> the same mesh with
    attention computed per sequence (its weights, split by heads before, replicated over TP ranks): DCP reshards
    model and optimizer; losses continue."""
    out = tmp_path / "other-layout"
    shardwise("train", *RUN, *layout, f"--checkpoint.resume={uninterrupted / 'checkpoints' / 'step-3'}",
              f"--output.dir={out}")
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


def only_rank_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """This process as the only rank (gloo), with a tiny tied model (tiny-qwen2)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": 0, "LOCAL_RANK": 0, "WORLD_SIZE": 1, "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port}.items():
        monkeypatch.setenv(key, str(value))
    return build_run(load_config(None, {"parallel.tp": 1, "parallel.dp_shard": 1, "checkpoint.resume": "auto",
                                        "output.dir": str(tmp_path / "out")}))


@pytest.fixture
def one_rank(tmp_path, monkeypatch) -> Iterator[Run]:
    """For what checkpoints do inside a run."""
    yield only_rank_run(tmp_path, monkeypatch)
    dist.destroy_process_group()


@pytest.fixture
def own_head(tmp_path, monkeypatch) -> Iterator[Run]:
    """A one-process run as they were before ``model.materialize`` re-tied the head (2026-11-27): its tied model
    trains ``lm_head`` as a matrix of its own, one step of it here, then saved as step-1."""
    monkeypatch.setattr(model_module, "tie_embeddings", lambda model: None)
    run = only_rank_run(tmp_path, monkeypatch)
    assert run.model.hf.lm_head.weight is not run.model.hf.model.embed_tokens.weight
    optimizer_step(run, forward_backward(run, synthetic_batches(run)))
    checkpoint.save(run, 1, byte_tokenizer(), skipped=0)
    yield run
    dist.destroy_process_group()


def test_a_tied_head_trained_apart_is_refused_on_resume_and_exported_untied(own_head, tmp_path, capfd):
    """Resuming would keep one of its two matrices: one line naming the way on (export, then ``model.path``). The
    export keeps both, untied, as they were trained."""
    step = checkpoints_root(own_head.cfg) / "step-1"
    with pytest.raises(ConfigError, match=r"trained lm_head apart from the tied embedding .*--model.path=OUT$") as err:
        checkpoint.resume(own_head)
    assert "\n" not in str(err.value)
    checkpoint.export(step, tmp_path / "hf")
    assert "exported untied, with both" in capfd.readouterr().err
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert not hf.config.tie_word_embeddings
    for name in ("lm_head.weight", "model.embed_tokens.weight"):
        assert torch.equal(hf.get_parameter(name), own_head.model.hf.get_parameter(name).detach()), name
    assert not torch.equal(hf.lm_head.weight, hf.model.embed_tokens.weight)


def test_damaged_checkpoints_fall_back_with_a_warning(one_rank, capfd):
    """Newest damaged: set aside, the older one loads. Named explicitly, or none intact: one line."""
    root = checkpoints_root(one_rank.cfg)
    for step in (1, 2):
        checkpoint.save(one_rank, step, byte_tokenizer(), skipped=step - 1)
    shard = root / "step-2" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-1] + b"!")
    assert checkpoint.resume(one_rank) == (1, 0)
    assert capfd.readouterr().err == (f"shardwise: warning: checkpoint {root / 'step-2'} is damaged (__0_0.distcp "
                                      "does not match its checksum); renamed it step-2.damaged, trying the next older one\n")
    assert sorted(p.name for p in root.iterdir()) == ["step-1", "step-2.damaged"]
    (root / "step-1" / "rng-rank0.pt").unlink()
    one_rank.cfg.checkpoint.resume = str(root / "step-1")
    with pytest.raises(ConfigError, match=r"checkpoint.resume=\S+step-1 is damaged \(rng-rank0.pt is missing\); "):
        checkpoint.resume(one_rank)
    one_rank.cfg.checkpoint.resume = "auto"
    with pytest.raises(ConfigError, match=r"no checkpoint in \S+ is intact \(see the warnings above\)"):
        checkpoint.resume(one_rank)


def test_failed_save_stops_and_keeps_the_older_checkpoint(one_rank, monkeypatch):
    """A full disk half-way through step-2's shards: every rank stops, step-1 stays complete and intact."""
    checkpoint.save(one_rank, 1, byte_tokenizer(), skipped=0)

    def full_disk(state: dict, checkpoint_id: Path) -> None:
        (checkpoint_id / "__0_0.distcp").write_bytes(b"half a shard")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.dcp, "save", full_disk)
    with pytest.raises(Stop) as stop:
        checkpoint.save(one_rank, 2, byte_tokenizer(), skipped=0)
    assert stop.value.code == SAVE_FAILED_EXIT
    assert str(stop.value) == ("error: saving checkpoint step-2 failed (rank 0: OSError: [Errno 28] No space left on "
                               "device); the older checkpoints are intact")
    assert [p.name for p in complete_checkpoints(checkpoints_root(one_rank.cfg))] == ["step-1"]
    assert checkpoint.resume(one_rank) == (1, 0)


def test_full_disk_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100 * 2**30, 100 * 2**30, 2**20))
    assert main(["train", *RUN, *LAYOUT_2X2, f"--output.dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"shardwise: error: output.dir={tmp_path / 'out'} has 0.0 GiB free, "
                                               "but this run's checkpoints need about "), err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_dir_fails_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["train", f"--output.dir={tmp_path / 'file' / 'out'}"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        (f"shardwise: error: output.dir={tmp_path / 'file' / 'out'} is not writable ({tmp_path / 'file'} is not a "
         "folder); choose another output.dir")]
