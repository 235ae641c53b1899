"""The command line: the default job's outputs and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM

from shardwise import cli, launch
from shardwise.cli import main
from shardwise.config import ModelConfig
from shardwise.model import hf_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
METRIC_KEYS = {"step", "loss", "grad_norm", "lr", "tokens", "tokens_per_s", "tokens_per_s_per_device", "val_loss",
               "mfu", "peak_mem_gib", "elapsed_s", "skipped_steps"}


def test_train_launches_processes_and_writes_outputs(tmp_path):
    """`shardwise train` alone starts 4 gloo processes (dp_shard=2 x tp=2) and logs every step."""
    cmd = [sys.executable, "-m", "shardwise.cli", "train", "--train.steps=3", "--train.seq_len=64",
           f"--output.dir={tmp_path}"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["world_size"] == 4 and info["mesh"] == {"dp_replicate": 1, "dp_shard": 2, "cp": 1, "tp": 2}
    assert info["num_params"] == 780416  # tiny-qwen2 with its embedding tied to lm_head, counted once
    assert info["config"]["train"]["steps"] == 3
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(set(r) == METRIC_KEYS for r in records)
    assert records[-1]["tokens"] == 3 * 16 * 64 and records[0]["mfu"] is None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["tokens"] == 3 * 16 * 64 and summary["final_loss"] == records[-1]["loss"]
    assert f"done: 3 steps, {3 * 16 * 64:,} tokens" in proc.stdout
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([r["loss"] for r in records])
    assert {"lr", "grad_norm", "tokens_per_s", "tokens_per_s_per_device"} <= set(events.Tags()["scalars"])


MESH_OF_4_ON_2 = ("parallel.dp_replicate*dp_shard*cp*tp = 1*2*1*2 = 4 but the world size is 2; "
                  "set parallel.dp_shard=-1 to use the rest")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bad_inputs(tmp_path) -> dict[str, tuple[list[str], int, str]]:
    """The README's error table: case -> (arguments, world size under torchrun, the one line printed)."""
    gpt2, tokenless, empty = tmp_path / "gpt2", tmp_path / "no-tokenizer", tmp_path / "empty.txt"
    weightless = tmp_path / "no-weights"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": 4, "n_embd": 64}))
    hf_config(ModelConfig(preset="tiny-llama")).save_pretrained(weightless)
    AutoModelForCausalLM.from_config(hf_config(ModelConfig(preset="tiny-llama"))).save_pretrained(tokenless)
    empty.write_text("\n")
    one = ["--parallel.tp=1", "--parallel.dp_shard=1"]  # worker-side errors: one process is enough
    return {
        "world size vs. mesh": (["--parallel.dp_shard=2", "--parallel.tp=2"], 2, MESH_OF_4_ON_2),
        "unknown key": (["--train.seqlen=64"], 4, "unknown config key 'train.seqlen'; did you mean train.seq_len?"),
        "unsupported architecture": ([f"--model.path={gpt2}"], 4, (
            "architecture 'gpt2' is not supported; supported model_type values: gemma2, gemma3_text, granite, llama, "
            "mistral, mixtral, olmo2, olmoe, phi3, qwen2, qwen2_moe, qwen3, qwen3_moe")),
        "indivisible heads": (["--parallel.tp=3"], 3,
                              "attention heads (4) is not divisible by parallel.tp=3; use parallel.tp in [1, 2]"),
        "missing model folder": (["--model.path=/nonexistent"], 4,
                                 "model.path=/nonexistent: no config.json there; point it at a Hugging Face model folder"),
        "missing weight files": ([f"--model.path={weightless}"], 4, (
            f"model.path={weightless}: no model.safetensors or model.safetensors.index.json there; "
            "point it at a Hugging Face model folder with safetensors weights")),
        "missing tokenizer files": ([f"--model.path={tokenless}", *one], 1, (
            f"model.path={tokenless}: no loadable tokenizer there (ValueError); "
            "set data.tokenizer to a folder with tokenizer.json")),
        "attention that CP cannot use": (["--parallel.cp=2", "--model.attn_implementation=flex_attention"], 4, (
            "model.attn_implementation=flex_attention cannot attend across the chunks of parallel.cp=2 (it takes no "
            "mask of local queries x all keys); use sdpa or eager, or parallel.cp=1")),
        "seq_len that CP cannot cut": (["--parallel.cp=2", "--train.seq_len=250"], 4, (
            "train.seq_len=250 is not divisible by 2*parallel.cp*parallel.tp=8 (each sequence is cut into 2*cp chunks "
            "of tp shards); use train.seq_len=256")),
        "CUDA graphs that cannot replay": (["--train.cudagraphs=true", "--parallel.dp_shard=2", "--parallel.tp=2"], 4, (
            "train.cudagraphs=true needs one data-parallel rank, not dp_shard x cp = 2 (FSDP gathers parameters into "
            "new memory every step); raise parallel.tp or set train.cudagraphs=false")),
        "bad dtype": (["--train.dtype=fp8"], 4, "train.dtype='fp8' is not one of auto, float32, bfloat16"),
        "optimizer settings out of range": (["--train.lr=-1"], 4, "train.lr=-1.0 must be > 0"),
        "seq_len too long": (["--train.seq_len=4096"], 4,
                             "train.seq_len=4096 exceeds the model's max_position_embeddings=2048"),
        "empty data": ([f"--data.path={empty}", *one], 1, (
            f"data.path={empty} holds no text to train on (empty documents, completions and conversations "
            "without assistant turns are skipped)")),
    }


@pytest.fixture
def under_torchrun(monkeypatch):
    """This process as rank ``rank`` of a torchrun job of ``world`` processes (rank 0 really joins gloo)."""
    def enter(world: int, rank: int = 0) -> None:
        env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": world, "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": _free_port()}
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
    return enter


CASES = ["world size vs. mesh", "unknown key", "unsupported architecture", "indivisible heads", "missing model folder",
         "missing weight files", "missing tokenizer files", "attention that CP cannot use",
         "seq_len that CP cannot cut", "CUDA graphs that cannot replay", "bad dtype", "optimizer settings out of range",
         "seq_len too long", "empty data"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", ["self-launch", "torchrun"])
def test_bad_input_gets_one_line(case, path, bad_inputs, under_torchrun, tmp_path, capfd, monkeypatch):
    """Exit code 2, one line on stderr, output.dir never created, whichever way the job was started."""
    args, world, message = bad_inputs[case]
    if path == "torchrun":
        under_torchrun(world)
    elif case == "world size vs. mesh":  # started by shardwise, only a GPU count can disagree with the mesh
        monkeypatch.setattr(cli, "local_world_size", lambda cfg: 2)
    out = tmp_path / "out"
    assert main(["train", *args, f"--output.dir={out}"]) == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert err == [f"shardwise: error: {message}"]
    assert not out.exists()
    assert not torch.distributed.is_initialized()


def test_other_ranks_stay_quiet(under_torchrun, capfd, monkeypatch):
    monkeypatch.setattr(launch, "QUIET_RANK_GRACE_S", 0.0)
    under_torchrun(world=2, rank=1)
    assert main(["train", "--parallel.tp=3"]) == 2
    assert capfd.readouterr().err == ""


def test_real_torchrun_prints_one_line(tmp_path):
    """Two real workers under torchrun refuse a mesh of 4: rank 0 prints the line, both exit with code 2."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "shardwise.cli",
           "train", "--parallel.dp_shard=2", "--parallel.tp=2", f"--output.dir={tmp_path / 'out'}"]
    proc = subprocess.run(cmd, check=False, env=ENV, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "shardwise: error:" in line]
    assert errors == [f"shardwise: error: {MESH_OF_4_ON_2}"], proc.stderr[-3000:]
    # torchrun's own report follows (its traceback and failure table); no worker printed a traceback.
    assert "exitcode  : 2" in proc.stderr and "shardwise/" not in proc.stderr
    assert not Path(tmp_path / "out").exists()


def test_max_restarts_is_the_launchers_flag(under_torchrun, capfd):
    """Self-launched workers never see it; under torchrun it is torchrun's flag, and saying so is one line."""
    assert launch.worker_args(["train", "--max-restarts=2", "--train.steps=3", "--max-restarts", "1", "run.toml"]) == [
        "train", "--train.steps=3", "run.toml"]
    under_torchrun(world=4)
    assert main(["train", "--train.steps=3", "--max-restarts=1"]) == 2
    assert capfd.readouterr().err.splitlines() == [
        "shardwise: error: --max-restarts is for shardwise's own launch; under torchrun, pass torchrun --max-restarts=N"]
