"""Packed documents never see each other, and the loss stays the token mean on every layout.

References are plain single-process Hugging Face models (their own forward, one document at a
time), never shardwise's model or process groups; only the weights (``init_weights``) and the
samples (``load_data``) are shared.
"""

from __future__ import annotations

import json
import random
from itertools import pairwise
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import torchrun
from transformers import AutoModelForCausalLM

from shardwise.config import Config, ModelConfig, load_config
from shardwise.data import Batch, StepBatches, byte_tokenizer, load_data, pad_to_multiple
from shardwise.model import CausalLM, document_mask, hf_config, init_weights

SEED = 3


def hf_model(model_cfg: ModelConfig) -> torch.nn.Module:
    hf = AutoModelForCausalLM.from_config(hf_config(model_cfg), dtype=torch.float32)
    init_weights(CausalLM(hf), torch.device("cpu"), SEED)
    return hf


def alone_logits(hf: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Logits of each row's documents (split where positions restart), each run alone by HF."""
    rows = []
    for ids, pos in zip(input_ids, position_ids):
        starts = [*(pos == 0).nonzero().flatten().tolist(), len(pos)]
        rows.append(torch.cat([hf(input_ids=ids[a:b][None]).logits[0] for a, b in pairwise(starts)]))
    return torch.stack(rows)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def packed_rows(lengths_per_row: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randint(0, 256, (sum(r),), generator=gen) for r in lengths_per_row])
    pos = torch.stack([torch.cat([torch.arange(n) for n in r]) for r in lengths_per_row])
    return ids, pos


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_documents_alone(attn):
    model_cfg = ModelConfig(preset="tiny-llama", attn_implementation=attn)
    hf = hf_model(model_cfg)
    ids, pos = packed_rows([[7, 3, 12, 4], [26]])  # the second row has no boundary: the causal path
    packed = CausalLM(hf)(ids, pos)
    torch.testing.assert_close(packed, alone_logits(hf, ids, pos), rtol=1e-5, atol=1e-5)
    # The comparison has power: plain causal attention over the packed row lets documents mix.
    causal = torch.ones(1, 1, 26, 26, dtype=torch.bool).tril()
    if attn == "eager":  # eager attention takes an additive mask
        causal = torch.zeros(causal.shape).masked_fill(~causal, torch.finfo(torch.float32).min)
    leaky = CausalLM(hf)(ids, pos, attention_mask=causal)
    assert (leaky[0, 7:] - packed[0, 7:]).abs().max() > 1e-2


def test_padding_leaves_real_outputs_unchanged():
    hf = hf_model(ModelConfig(preset="tiny-qwen2"))
    ids, pos = packed_rows([[5, 8, 4]])
    padded = pad_to_multiple(Batch(ids, ids, pos), 4)
    assert padded.input_ids.shape[1] == 20 and padded.position_ids[0, 17:].tolist() == [4, 5, 6]
    logits = CausalLM(hf)(padded.input_ids, padded.position_ids)
    torch.testing.assert_close(logits[:, :17], alone_logits(hf, ids, pos), rtol=1e-5, atol=1e-5)


def test_document_mask_shape_and_fast_path():
    pos = torch.tensor([[0, 1, 0, 1, 2], [0, 1, 2, 3, 4]])
    mask = document_mask(pos, "sdpa", torch.float32)
    assert mask.shape == (2, 1, 5, 5) and mask.dtype == torch.bool
    assert mask[0, 0].int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0],
                                         [0, 0, 1, 1, 1]]
    assert torch.equal(mask[1, 0], torch.ones(5, 5, dtype=torch.bool).tril())
    assert document_mask(pos[1:], "sdpa", torch.float32) is None
    assert document_mask(pos, "sdpa", torch.float32, packed=False) is None  # the caller's word is taken
    assert torch.equal(document_mask(pos, "sdpa", torch.float32, packed=True), mask)
    with pytest.raises(ValueError, match="model.attn_implementation='flex_attention' cannot mask packed documents"):
        document_mask(pos, "flex_attention", torch.float32)


def test_sliding_window_and_eager_masks():
    """A window keeps keys fewer than ``window`` tokens back, within the document; eager attention, which
    applies only the mask it is given, gets a causal one even without documents or windows."""
    pos = torch.tensor([[0, 1, 0, 1, 2], [0, 1, 2, 3, 4]])
    windowed = document_mask(pos, "sdpa", torch.float32, window=2)
    assert windowed[1, 0].int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0],
                                             [0, 0, 0, 1, 1]]
    assert windowed[0, 0].int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0],
                                             [0, 0, 0, 1, 1]]
    assert document_mask(pos[1:], "sdpa", torch.float32, window=5) is None  # the window spans the sequence
    eager = document_mask(pos[1:], "eager", torch.float32)
    assert torch.equal(eager[0, 0] == 0, torch.ones(5, 5, dtype=torch.bool).tril())


def test_batch_decides_packing_on_the_host():
    """``Batch.to`` records whether the rows hold a document boundary, so the forward needn't ask the GPU."""
    pos = torch.tensor([[0, 1, 0, 1, 2], [0, 1, 2, 3, 4]])
    assert Batch(pos, pos, pos).to(torch.device("cpu")).packed is True
    assert Batch(pos[1:], pos[1:], pos[1:]).to(torch.device("cpu")).packed is False
    assert pad_to_multiple(Batch(pos, pos, pos, packed=True), 4).packed is True


def write_docs(path, n: int = 64) -> None:
    """Texts of 3 to 70 characters: packed windows hold several, unpacked samples are uneven."""
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    with path.open("w") as f:
        for _ in range(n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))[: rng.randint(3, 70)]
            f.write(json.dumps({"text": text}) + "\n")


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("packing")
    write_docs(root / "docs.jsonl")
    return {"data.path": str(root / "docs.jsonl"), "data.cache_dir": str(root / "cache"),
            "output.dir": str(root / "run"), "output.progress": "false", "train.seed": str(SEED),
            "train.seq_len": "39", "train.global_batch_size": "8", "train.micro_batch_size": "2",
            "train.dtype": "float32", "data.val_fraction": "0.1", "data.val_batches": "2",
            "parallel.dp_shard": "2", "parallel.tp": "2"}


@pytest.fixture(scope="module")
def worker(run_config, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("worker") / "results.pt"
    torchrun(4, "_packing_worker.py", "--overrides", json.dumps(run_config), "--out", str(out))
    return torch.load(out)


def single_process(run_config: dict[str, str], packing: bool) -> tuple[Config, StepBatches, StepBatches]:
    """The run's config and whole-global-batch samplers (train, held-out) on one process."""
    cfg = load_config(None, {**run_config, "data.packing": str(packing), "parallel.dp_shard": "1", "parallel.tp": "1"})
    train_samples, val_samples = load_data(cfg, byte_tokenizer())
    g = cfg.train.global_batch_size
    return cfg, StepBatches(train_samples, g, g, 0, 1), StepBatches(val_samples, g, g, 0, 1)


@torch.no_grad()
def test_packed_attention_under_tp_and_sp(worker, run_config):
    """dp_shard=2 x tp=2 with SP: each packed document's logits equal the document run alone."""
    cfg, batches, _ = single_process(run_config, packing=True)
    (batch,) = batches(0)
    assert int((batch.position_ids[:, 1:] == 0).sum()) >= 8, "the batch should pack several documents per row"
    got = worker["packed"]
    assert torch.equal(got["input_ids"][:, :39], batch.input_ids)
    ref = alone_logits(hf_model(cfg.model), batch.input_ids, batch.position_ids)
    assert rel_err(got["logits"][:, :39], ref) < 1e-5


@torch.no_grad()
def test_val_loss_is_the_token_mean_over_held_out_batches(worker, run_config):
    cfg, _, val_batches = single_process(run_config, packing=True)
    hf = hf_model(cfg.model)
    total, count = 0.0, 0
    for step in range(cfg.data.val_batches):
        (batch,) = val_batches(step)
        logits = alone_logits(hf, batch.input_ids, batch.position_ids)
        total += F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), reduction="sum").item()
        count += int((batch.labels != -100).sum())
    assert worker["packed"]["val_loss"] == pytest.approx(total / count, rel=1e-5)


def test_unpacked_loss_and_grads_are_layout_invariant(worker, run_config):
    """Uneven documents: 1 process == dp_shard=2 x tp=2 only if the loss is the global token mean."""
    cfg, batches, _ = single_process(run_config, packing=False)
    (batch,) = batches(0)
    hf = hf_model(cfg.model)
    logits = hf(input_ids=batch.input_ids).logits
    loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten())
    loss.backward()
    # The test has power: the mean of micro-batch means (2 rows each) differs by far more than the tolerance.
    micro_means = [F.cross_entropy(logits[i : i + 2].flatten(0, 1), batch.labels[i : i + 2].flatten())
                   for i in range(0, 8, 2)]
    assert abs(torch.stack(micro_means).mean().item() - loss.item()) > 1e-4 * loss.item()
    got = worker["unpacked"]
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert set(got["grads"]) == {n for n, _ in hf.named_parameters()}
    worst = max(got["grads"], key=lambda n: rel_err(got["grads"][n], dict(hf.named_parameters())[n].grad))
    assert rel_err(got["grads"][worst], dict(hf.named_parameters())[worst].grad) < 1e-5, worst


def test_metrics_log_val_loss_on_eval_steps_only(worker, run_config):
    records = worker["records"]
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["val_loss"] is None and isinstance(records[1]["val_loss"], float)
    lines = (Path(run_config["output.dir"]) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["val_loss"] for line in lines] == [None, records[1]["val_loss"]]
