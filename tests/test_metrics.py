"""The one MFU formula, pinned to figures measured outside this code, and the metrics file's bookkeeping."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import torch

from shardwise.config import ModelConfig
from shardwise.metrics import device_peak_flops, drop_steps_after, flops_per_token, mfu, run_summary
from shardwise.model import build_meta_model, flop_params, hf_config


def device_peak_flops_of(name: str) -> float | None:
    with mock.patch("torch.cuda.get_device_name", return_value=name):
        return device_peak_flops(torch.device("cuda", 0))


@pytest.mark.parametrize("tokens_per_s,published", [(42_824, 0.493), (29_097, 0.335), (2_326, 0.027)])
def test_mfu_gives_the_tp_issues_published_figures(tokens_per_s, published):
    """The TP issue's table (2xH100, Qwen2-1.5B shapes, seq 4096) printed tokens/s/GPU beside MFU; the formula
    over the preset's own parameter count must give the same MFU to the issue's rounding."""
    c = hf_config(ModelConfig(preset="qwen2-1.5b"))
    n = flop_params(build_meta_model(c))
    assert 1.50e9 < n < 1.56e9  # Qwen2-1.5B, its tied embedding counted once, as lm_head
    flops_token = flops_per_token(n, c.num_hidden_layers, c.hidden_size, 4096)
    peak = device_peak_flops_of("NVIDIA H100 80GB HBM3")
    assert round(mfu(tokens_per_s, flops_token, peak), 3) == published


def test_peak_is_the_dense_bf16_rate_of_a_known_gpu_else_none():
    assert device_peak_flops_of("NVIDIA H100 80GB HBM3") == device_peak_flops_of("NVIDIA H200") == 989e12
    assert device_peak_flops_of("NVIDIA A100-SXM4-80GB") == 312e12
    assert device_peak_flops_of("NVIDIA GeForce RTX 4090") is None  # no MFU rather than a guessed peak
    assert device_peak_flops(torch.device("cpu")) is None
    assert mfu(1e4, 1e9, None) is None


def _record(step: int, tokens_per_step: int = 100, seconds_per_step: float = 2.0, first: int = 1) -> dict:
    return {"step": step, "tokens": step * tokens_per_step, "elapsed_s": (step - first + 1) * seconds_per_step,
            "loss": 10.0 / step, "skipped_steps": 0}


def test_summary_of_a_resumed_run_counts_only_its_own_steps():
    """Resumed at step 4, a run's records start at step 5 with the whole run's token count; its throughput
    is the tokens of steps 5-8 over its own loop's time, not the whole run's tokens."""
    s = run_summary([_record(step, first=5) for step in range(5, 9)], world_size=2)
    assert (s["steps"], s["tokens"], s["wall_time_s"]) == (8, 800, 8.0)
    assert s["mean_tokens_per_s"] == pytest.approx(400 / 8.0)
    assert s["mean_tokens_per_s_per_device"] == pytest.approx(25.0)
    assert s["final_loss"] == pytest.approx(10.0 / 8)


def test_drop_steps_after_keeps_earlier_steps_and_drops_a_cut_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(_record(step)) for step in range(1, 6)]
    path.write_text("\n".join(lines[:4]) + "\n" + lines[4][:15])  # step 5's line cut short by a crash
    drop_steps_after(path, 3)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    drop_steps_after(path, 0)
    assert path.read_text() == ""
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # replaced in place, no temporary left
    drop_steps_after(tmp_path / "absent.jsonl", 3)  # a run that never logged: nothing to do
    assert not (tmp_path / "absent.jsonl").exists()
