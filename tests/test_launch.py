"""``shardwise.launch``: the flags handed to torchrun fit the torch that runs them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch.distributed.run

from shardwise import launch
from shardwise.config import ModelConfig, ParallelConfig, load_config
from shardwise.model import hf_config


@pytest.mark.parametrize("has_flag", [True, False])
def test_shutdown_timeout_reaches_torchrun_of_any_version(monkeypatch, has_flag):
    """torch 2.13's torchrun takes --shutdown-timeout; 2.11's (the GPU image's) refuses it, so it gets the
    environment variable the flag defaults to instead, and the launch goes ahead."""
    seen: list[list[str]] = []
    monkeypatch.setattr(torch.distributed.run, "main", seen.append)
    monkeypatch.setattr(launch, "_torchrun_has", lambda flag: has_flag or flag != "--shutdown-timeout")
    monkeypatch.delenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", raising=False)
    assert launch.launch("some.module", ["--x=1"], 2, shutdown_timeout_s=77) == 0
    (args,) = seen
    assert ("--shutdown-timeout=77" in args) == has_flag
    assert (launch.os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT") == "77") == (not has_flag)
    assert args[-3:] == ["--module", "some.module", "--x=1"] and "--nproc-per-node=2" in args


def test_torchrun_flags_are_read_from_its_parser():
    assert launch._torchrun_has("--nproc-per-node") and not launch._torchrun_has("--no-such-flag")


def test_a_run_that_will_not_fit_is_warned_about_before_launch(monkeypatch, capsys):
    """On a GPU machine the launcher prints plan's estimate and recommendation when the run exceeds the device;
    a run that fits, or a machine without a GPU, prints nothing."""
    from types import SimpleNamespace

    from shardwise.config import load_config

    cfg = load_config(None, {"model.preset": "llama3-8b", "parallel.tp": "2", "train.seq_len": "4096",
                             "train.global_batch_size": "8", "train.micro_batch_size": "8"})
    launch.warn_memory(launch.gpu_plan(cfg, 2))  # this machine: no GPU
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(launch.torch.cuda, "is_available", lambda: True)
    for gib, warned in ((75, True), (2000, False)):
        monkeypatch.setattr(launch.torch.cuda, "get_device_properties",
                            lambda _, gib=gib: SimpleNamespace(total_memory=gib * 2**30))
        launch.warn_memory(launch.gpu_plan(cfg, 2))
        err = capsys.readouterr().err
        assert (f"more than the {gib:.1f} GiB there; shardwise plan recommends --train.activation_checkpointing="
                in err) is warned, err
        assert err.count("\n") == int(warned)


def test_a_failing_estimate_never_stops_the_launch(monkeypatch, capsys):
    """The warning is advisory: should the plan itself fail on some config, the launch goes on with a note."""
    import shardwise.plan

    def broken(*_):
        raise RuntimeError("no plan for this")

    monkeypatch.setattr(launch.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(shardwise.plan, "make_plan", broken)
    launch.warn_memory(launch.gpu_plan(None, 2))
    assert "no memory estimate before launch (RuntimeError: no plan for this)" in capsys.readouterr().err
    # parallel.reshard_after_forward=auto then takes the choice that needs no estimate
    assert launch.resolve_auto(load_config(None, {"parallel.tp": "1"}), 2).parallel.reshard_after_forward == "true"
    assert "auto -> true, no memory estimate (RuntimeError: no plan for this)" in capsys.readouterr().err
    # and parallel.tp_attention=auto splits heads, which every layout TP accepts runs
    auto = load_config(None, {"parallel.tp": "2", "parallel.tp_attention": "auto"})
    assert launch.resolve_auto(auto, 2).parallel.tp_attention == "heads"
    assert "(parallel.tp_attention=auto -> heads, no memory estimate (RuntimeError" in capsys.readouterr().err


@pytest.mark.parametrize("rank,printed", [("0", True), ("1", False)])
def test_the_ring_note_comes_once_from_rank_0(monkeypatch, capsys, rank, printed):
    """``parallel.cp_exchange=ring`` over packed rows: one note from rank 0 that most attention all-gathers."""
    monkeypatch.setenv("RANK", rank)
    launch.note_choices(load_config(None, {"parallel.cp": "2", "parallel.cp_exchange": "ring"}), "train")
    err = capsys.readouterr().err
    assert err.startswith("shardwise: note: parallel.cp_exchange=ring") == printed and err.count("\n") == printed


@pytest.mark.parametrize("command,flags,notes", [
    ("bench", {"parallel.cp": "2", "parallel.cp_exchange": "ring"}, []),  # bench's rows hold one document each
    ("bench", {"parallel.async_tp": "true", "train.micro_batch_size": "1", "train.seq_len": "4096"},
     ["parallel.async_tp=true"]),
    ("train", {"parallel.async_tp": "true", "train.micro_batch_size": "1", "train.activation_checkpointing": "full"},
     ["parallel.async_tp=true"]),
    ("train", {"parallel.async_tp": "true", "train.micro_batch_size": "2", "train.seq_len": "4096"}, []),  # 1.01x
    ("train", {"parallel.async_tp": "true", "train.micro_batch_size": "1", "train.seq_len": "32768"}, []),
    ("train", {"parallel.async_tp": "true", "train.micro_batch_size": "1", "train.seq_len": "8192",
               "parallel.cp": "2"}, ["parallel.async_tp=true"]),  # each CP rank holds 4096 of them
    ("train", {"train.micro_batch_size": "1"}, [])])
def test_notes_name_the_settings_measured_slower(monkeypatch, capsys, command, flags, notes):
    """Async TP at 4,096 tokens per micro-batch and CP rank or fewer (0.83x of plain TP on 2xH100, the step waiting
    on the host) gets a note; at more (1.01x at 8,192 and 32,768), or plain TP at any size, none."""
    monkeypatch.setenv("RANK", "0")
    launch.note_choices(load_config(None, flags), command)
    lines = capsys.readouterr().err.splitlines()
    assert [line.removeprefix("shardwise: note: ").split(" ")[0] for line in lines] == notes


@pytest.mark.parametrize("preset,asked,flags,noted", [
    ("tiny-mixtral", False, {}, True), ("tiny-mixtral", True, {}, False),
    ("tiny-mixtral", False, {"train.router_aux_loss": "0"}, False),
    ("tiny-mixtral", False, {"train.router_aux_loss": "0.01"}, False), ("tiny-qwen2", False, {}, False)])
def test_an_moe_without_a_load_balancing_loss_gets_a_note(tmp_path, monkeypatch, capsys, preset, asked, flags, noted):
    """A mixture of experts whose config sets no ``output_router_logits`` (the released ones) trains, as in
    transformers, without its routers' load-balancing loss, and hears so before training; not where the config asks
    for the loss (shardwise adds it), where the user set ``train.router_aux_loss``, or for a dense model."""
    config = hf_config(ModelConfig(preset=preset))
    config.output_router_logits, config.router_aux_loss_coef = asked, 0.02
    config.save_pretrained(tmp_path)
    monkeypatch.setenv("RANK", "0")
    launch.note_choices(load_config(None, {"model.path": str(tmp_path), **flags}), "train")
    err = capsys.readouterr().err
    assert ("trains without its routers' load-balancing loss" in err) == noted
    assert not noted or "--train.router_aux_loss=0.01 adds it" in err


@pytest.mark.parametrize("setting,tp,budget,want", [
    ("auto", 1, 80, "false"), ("auto", 1, 60, "true"), ("auto", 2, 80, "auto"),  # tp=2 on 2 GPUs: no FSDP
    ("true", 1, 80, "true"), ("false", 1, 60, "false"), ("auto", 1, None, "auto")])  # None: this machine, no GPU
def test_launch_resolves_auto_for_the_gpu(capsys, setting, tp, budget, want):
    """The launcher (or each torchrun worker) turns ``auto`` into the plan's choice for its GPUs, says which, and
    leaves explicit settings, layouts without FSDP and machines without a GPU as they are."""
    cfg = load_config(None, {"model.preset": "llama3-8b", "model.dtype": "bfloat16", "train.seq_len": "4096",
                             "train.global_batch_size": "8", "train.micro_batch_size": "1", "parallel.tp": str(tp),
                             "parallel.reshard_after_forward": setting})
    resolved = launch.resolve_auto(cfg, 2, budget)
    assert resolved.parallel.reshard_after_forward == want
    note = capsys.readouterr().err
    assert ("parallel.reshard_after_forward=auto -> " in note) == (setting == "auto" and want != "auto")


@pytest.mark.parametrize("flags,budget,want,why", [
    ({"train.micro_batch_size": "8"}, 80, "sequences", "fits within 90% of 80 GiB"),
    ({"train.micro_batch_size": "1"}, 80, "heads", "micro-batches of 1 sequence, not a multiple of parallel.tp=2"),
    ({"train.micro_batch_size": "8"}, 4, "heads", "per sequence would need about"),
    ({"train.micro_batch_size": "8", "parallel.tp_attention": "heads"}, 80, "heads", None),
    ({"train.micro_batch_size": "8"}, None, "auto", None)])  # None: this machine, no GPU
def test_launch_chooses_attention_per_sequence_where_the_plan_fits(capsys, flags, budget, want, why):
    """``parallel.tp_attention=auto`` becomes ``sequences`` where the plan of that layout runs and fits the GPU, else
    ``heads``; rank 0 says which and why. Explicit settings and machines without a GPU stay as they are."""
    cfg = load_config(None, {"model.preset": "qwen2-0.5b", "train.seq_len": "2048", "train.global_batch_size": "8",
                             "parallel.tp": "2", "parallel.tp_attention": "auto", **flags})
    assert launch.resolve_auto(cfg, 2, budget).parallel.tp_attention == want
    notes = [line for line in capsys.readouterr().err.splitlines() if "tp_attention=auto" in line]
    assert len(notes) == (why is not None) and (why is None or why in notes[0] and f"auto -> {want}" in notes[0])


def test_the_launcher_hands_its_workers_the_resolved_settings(monkeypatch):
    """The launcher plans once and passes what ``auto`` became to every worker as flags, so that no worker plans
    again, nor decides differently."""
    from shardwise import cli

    report = {"device_memory_gib": 80.0, "reshard_after_forward": False, "tp_attention": "sequences",
              "tp_attention_why": "fits within 90% of 80 GiB", "checks": []}
    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "gpu_plan", lambda *_: report)
    monkeypatch.setattr(cli, "launch", lambda module, argv, nproc, **_: seen.append(argv) or 0)
    argv = ["bench", "--parallel.dp_shard=2", "--parallel.tp=2", "--parallel.tp_attention=auto"]
    assert cli.main(list(argv)) == 0
    assert seen == [[*argv, "--parallel.reshard_after_forward=false", "--parallel.tp_attention=sequences"]]


@pytest.mark.parametrize("flags,gpus,want", [
    ({}, 2, 2), ({}, 8, 2), ({}, 1, 1), ({"cp": 2}, 2, 1), ({"cp": 2}, 8, 2), ({"dp_replicate": 2, "cp": 2}, 4, 1)])
def test_default_tp_leaves_room_for_the_flags(flags, gpus, want):
    """Without a config file the GPUs get the default job's tp=2 only where the user's cp and dp_replicate leave
    room for it: ``--parallel.cp=2`` on 2 GPUs was refused for a tp=2 nobody asked for (session 21, call 88)."""
    assert launch.default_tp(ParallelConfig(**flags), gpus) == want


LEAVER = """
import sys, time
import torch.distributed as dist
from shardwise import launch

dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}", rank=0, world_size=1)
launch.LEAVE_GRACE_S = 0.5
if sys.argv[1] == "hang":  # as NCCL does while a CUDA graph holds its communicator (pytorch/pytorch#115388)
    dist.destroy_process_group = lambda *args, **kwargs: time.sleep(600)
launch.leave_group(7)
time.sleep(1.0)  # past the grace: a timer left running would end the process now
print("left the group")
sys.exit(3)
"""


@pytest.mark.parametrize("how", ["hang", "normal"])
def test_a_finished_worker_exits_even_if_its_group_never_closes(tmp_path, how):
    """A process group whose destruction never returns ends the process after ``LEAVE_GRACE_S`` with the code the
    worker would have exited with, and one line saying so; a group that closes leaves the worker running on."""
    proc = subprocess.run([sys.executable, "-c", LEAVER, how, str(tmp_path / "store")], capture_output=True,
                          text=True, timeout=60, check=False)
    if how == "hang":
        assert proc.returncode == 7 and "left the group" not in proc.stdout
        assert "rank 0: the process group was not destroyed within 0.5 s after the run ended" in proc.stderr
    else:
        assert proc.returncode == 3 and "left the group" in proc.stdout and "not destroyed" not in proc.stderr
