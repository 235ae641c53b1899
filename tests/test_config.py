from __future__ import annotations

import json
import signal

import pytest

from shardwise.config import ConfigError, ModelConfig, load_config, parse_overrides, parse_signals
from shardwise.model import hf_config


def test_defaults_and_default_job():
    cfg = load_config(None, {})
    assert cfg.model.preset == "tiny-qwen2"
    assert (cfg.parallel.tp, cfg.parallel.dp_shard, cfg.parallel.dp_replicate) == (2, -1, 1)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nsteps = 7\nlr = 1\n[parallel]\nsequence_parallel = false\n')
    cfg = load_config(str(path), parse_overrides(["--train.steps=9", "--model.preset", "tiny-llama"]))
    assert (cfg.train.steps, cfg.train.lr, cfg.model.preset) == (9, 1.0, "tiny-llama")
    assert cfg.parallel.sequence_parallel is False
    assert cfg.parallel.tp == 1  # no file default job when a file is given


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match="did you mean train.seq_len"):
        load_config(None, {"train.seqlen": "128"})


@pytest.mark.parametrize("key,value,match", [
    ("train.steps", "many", "not a valid int"),
    ("train.dtype", "fp8", "not one of"),
    ("parallel.dp_shard", "0", "must be >= 1, or -1"),
    ("parallel.sequence_parallel", "maybe", "not a valid bool"),
    ("train.on_nonfinite", "ignore", "not one of stop, skip"),
    ("parallel.timeout_s", "0", "must be >= 1"),
    ("checkpoint.on_signal", "SIGTERM,SIGKILL", "SIGKILL is not a signal that can be caught"),
    ("checkpoint.on_signal", "SIGNOPE", "SIGNOPE is not a signal that can be caught"),
    ("train.lr", "-1", r"train.lr=-1.0 must be > 0"),
    ("train.lr", "nan", r"train.lr=nan must be > 0"),
    ("train.warmup_steps", "-1", r"train.warmup_steps=-1 must be >= 0"),
    ("train.weight_decay", "-0.1", r"train.weight_decay=-0.1 must be >= 0"),
    ("train.grad_clip", "-1", r"train.grad_clip=-1.0 must be >= 0 \(0: no clipping\)"),
    ("train.min_lr_ratio", "1.5", r"train.min_lr_ratio=1.5 must be in \[0, 1\]"),
    ("train.beta1", "1", r"train.beta1=1.0 must be in \[0, 1\)"),
    ("train.beta2", "-0.5", r"train.beta2=-0.5 must be in \[0, 1\)"),
    ("data.max_bytes", "0", r"data.max_bytes=0 must be >= 1"),
])
def test_bad_values(key, value, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, {key: value})


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"), {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad), {})


def test_async_tp_needs_compile_tp_and_sp():
    with pytest.raises(ConfigError, match=r"parallel.async_tp=true needs train.compile \(auto or true\)"):
        load_config(None, {"parallel.async_tp": "true", "train.compile": "false"})
    with pytest.raises(ConfigError, match="parallel.async_tp=true needs"):
        load_config(None, {"parallel.async_tp": "true", "parallel.sequence_parallel": "false"})
    cfg = load_config(None, {"parallel.async_tp": "true"})
    assert cfg.parallel.async_tp and cfg.parallel.tp == 2


def test_compile_auto_means_on_gpus_only(tmp_path):
    """``train.compile=auto`` (the default) compiles on CUDA, not on CPU; TOML booleans are accepted."""
    auto = load_config(None, {}).train
    assert auto.compile == "auto" and auto.compiles("cuda") and not auto.compiles("cpu")
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\ncompile = true\n")
    assert load_config(str(toml), {}).train.compiles("cpu")
    assert not load_config(None, {"train.compile": "false"}).train.compiles("cuda")
    with pytest.raises(ConfigError, match="train.compile='yes' is not one of auto, true, false"):
        load_config(None, {"train.compile": "yes"})


def test_reshard_after_forward_auto_frees_blocks_until_resolved(tmp_path):
    """``parallel.reshard_after_forward=auto`` (the default) frees blocks after forward until the launch resolves it
    for a GPU (``launch.resolve_auto``); TOML booleans are accepted, other words refused with the choices."""
    assert load_config(None, {}).parallel.reshard_after_forward == "auto"
    assert load_config(None, {}).parallel.reshards()
    toml = tmp_path / "run.toml"
    toml.write_text("[parallel]\nreshard_after_forward = false\n")
    assert not load_config(str(toml), {}).parallel.reshards()
    assert load_config(None, {"parallel.reshard_after_forward": "true"}).parallel.reshards()
    # a run.json logged before auto holds a boolean, which plan_for passes on as "False"
    assert load_config(None, {"parallel.reshard_after_forward": "False"}).parallel.reshard_after_forward == "false"
    with pytest.raises(ConfigError, match="parallel.reshard_after_forward='never' is not one of auto, true, false"):
        load_config(None, {"parallel.reshard_after_forward": "never"})


def test_signals_to_stop_on():
    assert parse_signals(load_config(None, {}).checkpoint.on_signal) == [signal.SIGTERM, signal.SIGUSR1]
    assert parse_signals(" sigusr2 ") == [signal.SIGUSR2] and parse_signals("") == []


# Imported only if transformers runs the folder's own code: it leaves the file MARKER.
REMOTE_CONFIG = """
from pathlib import Path
from transformers import Qwen2Config
Path(MARKER).touch()

class RemoteConfig(Qwen2Config):
    pass
"""


def test_remote_code_runs_only_when_trusted(tmp_path):
    """model.trust_remote_code reaches transformers: off, a folder's auto_map is ignored and its code never runs."""
    folder, marker = tmp_path / "model", tmp_path / "ran"
    folder.mkdir()
    (folder / "remote.py").write_text(REMOTE_CONFIG.replace("MARKER", repr(str(marker))))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2",
                                                    "auto_map": {"AutoConfig": "remote.RemoteConfig"}}))
    assert type(hf_config(ModelConfig(path=str(folder)))).__name__ == "Qwen2Config"
    assert not marker.exists()
    assert type(hf_config(ModelConfig(path=str(folder), trust_remote_code=True))).__name__ == "RemoteConfig"
    assert marker.exists()


@pytest.mark.parametrize("extra", [{"parallel.sequence_parallel": "false"}, {"parallel.cp": "2"}])
def test_attention_per_sequence_needs_each_tp_rank_to_hold_whole_rows(extra):
    """``parallel.tp_attention=sequences`` relies on sequence parallelism's cut of whole rows: without it, or with
    context parallelism cutting the rows, one line names the fix."""
    with pytest.raises(ConfigError, match=r"^parallel.tp_attention=sequences needs parallel.sequence_parallel=true "
                                          r"and parallel.cp=1 .*; set parallel.tp_attention=heads$"):
        load_config(None, {"parallel.tp_attention": "sequences", **extra})
    assert load_config(None, {"parallel.tp_attention": "sequences"}).parallel.tp_attention == "sequences"
    assert load_config(None, {"parallel.tp_attention": "auto", **extra}).parallel.attention() == "heads"


def test_attention_auto_splits_heads_until_resolved():
    """``parallel.tp_attention=auto`` splits heads, which every layout TP accepts runs, until the launch resolves it
    for a GPU (``launch.resolve_auto``); it is the default; other words are refused with the choices."""
    assert load_config(None, {}).parallel.tp_attention == "auto"
    assert load_config(None, {"parallel.tp_attention": "auto"}).parallel.attention() == "heads"
    assert load_config(None, {"parallel.tp_attention": "sequences"}).parallel.attention() == "sequences"
    with pytest.raises(ConfigError, match="parallel.tp_attention='rows' is not one of auto, heads, sequences"):
        load_config(None, {"parallel.tp_attention": "rows"})
