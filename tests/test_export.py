"""Export: a sharded checkpoint becomes a Hugging Face folder that computes the trainer's own loss.

The trainer logs, as step k+1's loss, the loss of the weights after k steps on batch k. So the
checkpoint of step k, exported and loaded with plain ``AutoModelForCausalLM.from_pretrained``
(its own forward, its own tokenizer files), must give that logged loss on batch k.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import shardwise
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from shardwise.cli import main
from shardwise.config import Config, load_config
from shardwise.data import StepBatches, load_data

RUN = {"train.seq_len": "32", "train.global_batch_size": "4", "train.micro_batch_size": "2",
       "data.max_bytes": "100000", "train.steps": "2", "train.lr": "1e-2", "train.warmup_steps": "0",
       "train.dtype": "float32", "output.progress": "false", "checkpoint.every": "1"}
# Tied embeddings under tensor parallelism (re-tied DTensors), untied under FSDP sharding, Phi-3 on tp=4: fused
# q/k/v and gate/up stored in HF's layout, its 2 KV heads each computed by 2 ranks; and Mixtral on dp_shard=2 x tp=2:
# fused experts sharded by FSDP, stored one matrix per expert under Mixtral's original names.
CASES = {"qwen2-tp2": {"model.preset": "tiny-qwen2", "parallel.tp": "2", "parallel.dp_shard": "1"},
         "llama-dp2": {"model.preset": "tiny-llama", "parallel.tp": "1", "parallel.dp_shard": "2"},
         "phi3-tp4": {"model.preset": "tiny-phi3", "parallel.tp": "4", "parallel.dp_shard": "1"},
         "mixtral-dp2xtp2": {"model.preset": "tiny-mixtral", "parallel.tp": "2", "parallel.dp_shard": "2",
                             "train.router_aux_loss": "0.02"}}


def train(overrides: dict[str, str]) -> None:
    shardwise("train", *(f"--{k}={v}" for k, v in overrides.items()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Callable[[str], tuple[Config, Path]]:
    """A case's run, trained once for this module whichever tests ask for it (parametrized here or below)."""
    @cache
    def run(name: str) -> tuple[Config, Path]:
        out = tmp_path_factory.mktemp(name)
        overrides = {**RUN, **CASES[name], "output.dir": str(out)}
        train(overrides)
        return load_config(None, overrides), out
    return run


@pytest.fixture(params=list(CASES))
def trained(request, runs) -> tuple[Config, Path]:
    return runs(request.param)


def logged_losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_export_round_trip(trained, tmp_path):
    cfg, out = trained
    hf_dir = tmp_path / "hf"
    assert main(["export", str(out / "checkpoints" / "step-1"), str(hf_dir)]) == 0
    model = AutoModelForCausalLM.from_pretrained(hf_dir)
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tied == (cfg.model.preset == "tiny-qwen2") == model.config.tie_word_embeddings
    with safe_open(hf_dir / "model.safetensors", "pt") as f:
        stored = set(f.keys())
    assert ("lm_head.weight" in stored) == (not tied), "a tied lm_head is stored once, as the embedding"
    if cfg.model.preset == "tiny-mixtral":  # the names released Mixtral checkpoints have
        assert "model.layers.0.block_sparse_moe.experts.3.w1.weight" in stored
        assert not any(".mlp." in name for name in stored)
    assert sum(p.numel() for p in model.parameters()) == json.loads((out / "run.json").read_text())["num_params"]
    t = cfg.train
    samples, _ = load_data(cfg, AutoTokenizer.from_pretrained(hf_dir))
    (batch,) = StepBatches(samples, t.global_batch_size, t.global_batch_size, 0, 1)(1)
    with torch.no_grad():  # HF's own forward derives its packed-document mask from position_ids
        logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten())
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[1]["step"] == 2
    assert loss.item() == pytest.approx(logged_losses(out)[1], rel=1e-5)


@pytest.mark.parametrize("trained", ["phi3-tp4"], indirect=True)
def test_resume_on_another_tp(trained, tmp_path):
    """A fused, KV-replicated checkpoint of tp=4 resumes on dp_shard=2 x tp=2 (KV heads split, not replicated):
    step 2's loss, computed from the weights of step 1, is the uninterrupted run's."""
    _, out = trained
    resumed = tmp_path / "resumed"
    train({**RUN, **CASES["phi3-tp4"], "parallel.tp": "2", "parallel.dp_shard": "2", "output.dir": str(resumed),
           "checkpoint.resume": str(out / "checkpoints" / "step-1")})
    assert logged_losses(resumed)[-1] == pytest.approx(logged_losses(out)[1], rel=1e-5)


@pytest.mark.parametrize("trained", ["mixtral-dp2xtp2"], indirect=True)
def test_the_logged_router_loss_is_transformers_aux_loss(trained, tmp_path):
    """Trained with the routers' load-balancing loss, step 2 logs it (``router_loss``) as the mean of transformers'
    own ``aux_loss`` over the step's micro-batches, from the exported weights of step 1; ``loss`` stays the
    cross-entropy (``test_export_round_trip``)."""
    cfg, out = trained
    assert main(["export", str(out / "checkpoints" / "step-1"), str(tmp_path / "hf")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    t = cfg.train
    samples, _ = load_data(cfg, AutoTokenizer.from_pretrained(tmp_path / "hf"))
    with torch.no_grad():
        aux = [model(input_ids=b.input_ids, position_ids=b.position_ids, output_router_logits=True).aux_loss
               for b in StepBatches(samples, t.global_batch_size, t.micro_batch_size, 0, 1)(1)]
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[1]["router_loss"] == pytest.approx(float(sum(aux) / len(aux)), rel=1e-5)


def test_export_refuses_non_empty_out_dir_and_missing_checkpoint(trained, tmp_path, capsys):
    _, out = trained
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["export", str(out / "checkpoints" / "step-2"), str(tmp_path)]) == 2
    assert main(["export", str(out / "checkpoints" / "step-7"), str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"shardwise: error: {tmp_path} is not empty; give a new or empty output folder",
                   (f"shardwise: error: {out / 'checkpoints' / 'step-7'}: not a complete shardwise "
                    "checkpoint (no shardwise.json); give a checkpoints/step-N folder")]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
