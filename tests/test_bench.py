"""``shardwise bench``: the CPU smoke run goes through the CLI's launch path and writes a full record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import shardwise
from shardwise.bench import document_lengths, source_digest
from shardwise.corpus import Documents
from shardwise.data import TokenWindows
from shardwise.model import PRESETS

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize("cp", [1, 2])
def test_bench_writes_record(tmp_path, cp):
    """Tiny Llama on 2 gloo processes at tp=2 (no FSDP: weights read as local shards) and on 4 at cp=2 x tp=2 (each
    row split over 2 ranks); only types and shapes are checked, never speed.
    With ``bench.profile`` one more step is profiled: rank 0's trace is written and summarized."""
    cmd = [sys.executable, "-m", "shardwise.cli", "bench", "--model.preset=tiny-llama", "--parallel.dp_shard=1",
           f"--parallel.cp={cp}", "--parallel.tp=2",
           "--train.seq_len=64", "--train.global_batch_size=4", "--train.micro_batch_size=2",
           "--bench.warmup=1", "--bench.steps=2", "--bench.profile=true", f"--output.dir={tmp_path}",
           f"--bench.document_len={16 * (cp - 1)}"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tokens/s" in proc.stdout and f"dp_replicate=1 dp_shard=1 cp={cp} tp=2 on {2 * cp} x" in proc.stdout
    r = json.loads((tmp_path / "bench.json").read_text())
    assert r["preset"] == "tiny-llama" and r["model_type"] == "llama"
    assert r["layout"] == {"dp_replicate": 1, "dp_shard": 1, "cp": cp, "tp": 2, "world_size": 2 * cp}
    tiny = PRESETS["tiny-llama"]  # untied: the embedding lookup is not a matmul; the global count, not a shard's
    assert r["flop_params"] == r["num_params"] - tiny["vocab_size"] * tiny["hidden_size"]
    assert (r["seq_len"], r["global_batch_size"], r["micro_batch_size"]) == (64, 4, 2)
    assert r["dtype"] == "float32" and r["activation_checkpointing"] == "none" and r["compile"] is False  # auto: off on CPU
    assert r["sequence_parallel"] is True and r["loss_parallel"] is True
    assert len(r["step_times_s"]) == 2 and all(t > 0 for t in r["step_times_s"])
    assert r["step_time_s_median"] > 0 and r["tokens_per_s"] > 0
    assert abs(r["tokens_per_s_per_device"] * 2 * cp - r["tokens_per_s"]) < 1e-6 * r["tokens_per_s"]
    assert r["mfu"] is None and r["peak_mem_gib"] is None
    assert r["document_len"] == 16 * (cp - 1) and r["packed_attention"] == "mask"  # flex trains on GPUs only
    assert ("documents of ~16 (mask)" in proc.stdout) == (cp == 2)
    assert isinstance(r["device"], str) and r["device"]
    assert {"torch", "transformers", "python", "cuda", "nccl"} <= set(r["versions"])
    assert r["versions"]["shardwise"] == source_digest()  # the package this test imports, which the run imported
    assert isinstance(r["versions"]["torch"], str) and isinstance(r["date"], str) and "T" in r["date"]
    profile = r["profile"]
    assert profile["trace"] == str(tmp_path / "trace-rank0.json") and "traceEvents" in json.loads(
        (tmp_path / "trace-rank0.json").read_text())
    assert profile["wall_ms"] > 0 and profile["cpu_ops_ms"] > 0 and "gpu_busy_ms" not in profile  # CPU: no kernels
    assert "profiled step" in proc.stdout


def test_source_digest_names_the_code(tmp_path):
    """The record's ``versions.shardwise``: the same for a copy of the package, another after one byte changes or
    a file is renamed, so rows that ran different trees cannot show one digest."""
    package = Path(shardwise.__file__).parent
    copy = shutil.copytree(package, tmp_path / "shardwise", ignore=shutil.ignore_patterns("__pycache__"))
    assert source_digest(copy) == source_digest(package) and len(source_digest(copy)) == 12
    edited = copy / "tp.py"
    edited.write_bytes(edited.read_bytes() + b"\n")
    changed = source_digest(copy)
    assert changed != source_digest(package)
    edited.rename(copy / "tq.py")
    assert source_digest(copy) not in (changed, source_digest(package))


def test_synthetic_documents_are_packed_like_data():
    """``bench.document_len``: seeded lengths of that mean, packed by the trainer's own ``TokenWindows``, so rows
    hold document boundaries (positions restart) and their first tokens are not targets."""
    lengths = document_lengths(20, 4000, seed=3)
    assert lengths.sum() >= 4000 and 18 < lengths.mean() < 22 and lengths.min() >= 1
    assert (lengths == document_lengths(20, 4000, seed=3)).all() and document_lengths(0, 4000, 3) is None
    windows = TokenWindows(Documents.from_tokens(torch.arange(4000), lengths), 64, 0)
    _, labels, positions = windows.sample(0)
    restarts = (positions[1:] == 0).nonzero().flatten() + 1
    assert len(restarts) >= 1 and (labels[restarts - 1] == -100).all()


def test_bench_plans_its_rows_as_they_are():
    """bench's rows hold document boundaries only with ``bench.document_len``; its config says so to the plan made
    before launch (masks, sdpa's copies of them, the ring), whatever ``data.packing`` was."""
    from shardwise.config import bench_config, load_config

    assert not bench_config(load_config(None, {})).data.packing
    assert bench_config(load_config(None, {"data.packing": "false", "bench.document_len": "512"})).data.packing
