"""The command line: the default job's outputs and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shardwise.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
METRIC_KEYS = {"step", "loss", "grad_norm", "lr", "tokens", "tokens_per_s", "tokens_per_s_per_device", "val_loss",
               "mfu", "peak_mem_gib", "elapsed_s"}


def test_train_launches_processes_and_writes_outputs(tmp_path):
    """`shardwise train` alone starts 4 gloo processes (dp_shard=2 x tp=2) and logs every step."""
    cmd = [sys.executable, "-m", "shardwise.cli", "train", "--train.steps=3", "--train.seq_len=64",
           f"--output.dir={tmp_path}"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["world_size"] == 4 and info["mesh"] == {"dp_replicate": 1, "dp_shard": 2, "tp": 2}
    assert info["num_params"] == 780416  # tiny-qwen2 with its embedding tied to lm_head, counted once
    assert info["config"]["train"]["steps"] == 3
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(set(r) == METRIC_KEYS for r in records)
    assert records[-1]["tokens"] == 3 * 16 * 64 and records[0]["mfu"] is None


@pytest.mark.parametrize("args,message", [
    (["--train.seqlen=64"], "unknown config key 'train.seqlen'; did you mean train.seq_len?"),
    (["--parallel.tp=3"], "attention heads (4) is not divisible by parallel.tp=3; use parallel.tp in [1, 2]"),
    (["--model.preset=tiny-qwen3", "--parallel.tp=4", "--train.seq_len=64"],
     "KV heads (2) is not divisible by parallel.tp=4"),
    (["--train.seq_len=4096"], "train.seq_len=4096 exceeds the model's max_position_embeddings=2048"),
    (["--model.preset=gpt-5"], "model.preset='gpt-5' is unknown"),
    (["--train.dtype=fp8"], "train.dtype='fp8' is not one of auto, float32, bfloat16"),
    (["--model.path=/nonexistent"], "model.path=/nonexistent: no config.json there"),
])
def test_bad_input_gets_one_line(args, message, capsys):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"shardwise: error: {message}"] or message in err
    assert len(err.strip().splitlines()) == 1


def test_unsupported_architecture(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": 4, "n_embd": 64}))
    assert main(["train", f"--model.path={tmp_path}"]) == 2
    assert "architecture 'gpt2' is not supported; supported model_type values: llama, mistral, qwen2, qwen3" in (
        capsys.readouterr().err)
