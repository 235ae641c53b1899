from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.attention.flex_attention as flex_api
from conftest import torchrun
from torch.nn.attention.flex_attention import flex_attention
from transformers import AutoModelForCausalLM

from shardwise import flex
from shardwise.config import ConfigError, ModelConfig, load_config
from shardwise.flex import uses_flex
from shardwise.launch import preflight
from shardwise.model import (
    SHIPPED_PRESETS,
    CausalLM,
    context_mask,
    document_block_mask,
    document_ids,
    document_mask,
    hf_config,
    init_weights,
)
from shardwise.parallelize import apply_flex
from shardwise.plans import model_forward


def _sdpa_presets() -> list[str]:
    return [p for p in SHIPPED_PRESETS if p.startswith("tiny-")
            and not model_forward(hf_config(ModelConfig(preset=p))).errors()]


def _assert_grads_close(got: dict, want: dict) -> None:
    """Every gradient within 1e-4 of the largest value of its reference (fp32, other summation orders)."""
    assert got.keys() == want.keys()
    for name, grad in want.items():
        assert (got[name] - grad).abs().max() <= 1e-4 * grad.abs().max(), name


def _logits_and_grads(model: CausalLM, ids: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, dict]:
    logits = model(ids, positions)
    logits.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return logits.detach(), grads


@pytest.mark.parametrize("preset", _sdpa_presets())
def test_block_masks_train_as_the_dense_mask(preset, monkeypatch):
    """The same model computes the same logits and gradients with flex ``BlockMask``s as with sdpa's dense
    masks: packed documents shorter and longer than a 128-token tile and than the presets' sliding windows (64),
    and a row without a boundary, which keeps sdpa's unmasked causal path. The backward runs flex's eager
    reference implementation (``_flex_cp_worker`` says how); on GPUs ``benchmarks/gpu_smoke.sh`` trains both
    ways with flex's compiled kernels and compares the losses."""
    monkeypatch.setattr(flex_api, "_validate_device", lambda *tensors: None)
    config = hf_config(ModelConfig(preset=preset))
    model = CausalLM(AutoModelForCausalLM.from_config(config, dtype=torch.float32))
    init_weights(model, torch.device("cpu"), seed=1)
    # seeded: in a mixture of experts a token whose top experts' scores nearly tie goes to another expert when the
    # attention sums in another order, so the comparison holds for given tokens, not for whatever the RNG holds
    ids = torch.randint(0, 256, (3, 300), generator=torch.Generator().manual_seed(0))
    positions = torch.stack([torch.cat([torch.arange(n) for n in (40, 150, 3, 107)]),
                             torch.cat([torch.arange(20, 200), torch.arange(120)]), torch.arange(300)])
    calls = []
    monkeypatch.setattr(flex, "flex_attention", lambda *a, **k: calls.append(1) or flex_attention(*a, **k))
    dense, dense_grads = _logits_and_grads(model, ids, positions)
    assert not calls
    apply_flex(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex warns that uncompiled it materializes the scores
        flexed, flex_grads = _logits_and_grads(model, ids, positions)
    assert len(calls) == config.num_hidden_layers  # each block's attention went through flex
    torch.testing.assert_close(flexed, dense, rtol=1e-4, atol=1e-4)  # fp32, other summation orders
    _assert_grads_close(flex_grads, dense_grads)


def test_block_mask_holds_the_dense_rule():
    """The ``BlockMask``'s rule, evaluated at every (query, key) pair of two rows (two documents; one), equals the
    dense mask entry by entry, with and without a window; rows without a boundary get no mask either way."""
    positions = torch.stack([torch.cat([torch.arange(5), torch.arange(11)]), torch.arange(16)])
    for window in (None, 4):
        dense = document_mask(positions, "sdpa", torch.float32, packed=True, window=window)
        block = document_mask(positions, "sdpa", torch.float32, packed=True, window=window, block_mask=True)
        q, kv = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
        for b in range(2):
            rule = block.mask_mod(torch.tensor(b), torch.tensor(0), q, kv)
            assert torch.equal(rule, dense[b, 0]), (b, window)
    assert document_mask(torch.arange(16).expand(2, 16), "sdpa", torch.float32, block_mask=True) is None


@pytest.mark.parametrize("cp", [2, 4])
def test_context_block_mask_holds_the_dense_rule(cp):
    """Under context parallelism each rank's ``BlockMask`` (its queries x every rank's keys in the all-gather's
    order) is its dense mask entry by entry, documents crossing the ranks' chunks, with and without a window."""
    documents = document_ids(torch.stack([torch.cat([torch.arange(n) for n in (5, 19, 8)]), torch.arange(32)]))
    for rank in range(cp):
        g = SimpleNamespace(size=cp, rank=rank)
        for window in (None, 6):
            dense = context_mask(documents, g, "sdpa", torch.float32, packed=True, window=window)
            block = context_mask(documents, g, "sdpa", torch.float32, packed=True, window=window, block_mask=True)
            assert (block.seq_lengths, dense.shape[2:]) == ((32 // cp, 32), (32 // cp, 32))
            q, kv = torch.meshgrid(torch.arange(32 // cp), torch.arange(32), indexing="ij")
            for b in range(2):
                assert torch.equal(block.mask_mod(torch.tensor(b), torch.tensor(0), q, kv), dense[b, 0]), (rank, window)


def test_compiled_block_mask_is_the_eager_one():
    """The builder GPUs use (``create_block_mask`` compiled with aten's sort) gives the eager builder's block
    indices exactly, on inductor's CPU backend: a ``cp=2`` rank's mask over rows of 1024 tokens (4 x 8 tiles),
    documents and a window, then a second shape (one rank's), which compiles anew (under automatic dynamic shapes
    the second shape failed to compile)."""
    documents = torch.stack([torch.arange(1024) // 200, torch.arange(1024) // 300])
    for cp, rank in ((2, 1), (1, 0)):
        eager = document_block_mask(documents, 100, cp, rank)
        compiled = flex._compiled_block_mask()(eager.mask_mod, 2, None, *eager.seq_lengths, device="cpu")
        for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
                     "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"):
            assert torch.equal(getattr(compiled, name), getattr(eager, name)), (cp, name)
        assert 0 < int(eager.kv_num_blocks.sum()) < eager.kv_indices.numel()  # some tiles partial, some skipped


@pytest.mark.parametrize("preset,layout", [("tiny-llama", "cp2"), ("tiny-gemma3", "cp2"), ("tiny-phi3", "tp2")])
def test_parallel_flex_trains_as_its_dense_masks(preset, layout, tmp_path):
    """cp=2 or tp=2 over packed rows, one step on the same weights: through flex ``BlockMask``s (under CP flex is
    called after the K/V all-gather, in every block) the logits, the loss and every gradient are those of the dense
    masks (of local queries x gathered keys under CP), which the parity suite proves equal to one process; grouped
    K/V heads, Gemma 3's sliding windows (64) shorter than the rows, and Phi-3's attention reading this rank's head
    counts from its own config (given flex's name without losing them: on H100s it died of SIGFPE tracing it,
    session 25). The backward runs flex's eager reference implementation (the worker's docstring says how); on GPUs its
    compiled kernels train as one GPU does (BENCHMARKS.md, sessions 20 and 25)."""
    out = tmp_path / "out.pt"
    cp, tp = (2, 1) if layout == "cp2" else (1, 2)
    overrides = {"model.preset": preset, "parallel.cp": cp, "parallel.tp": tp, "parallel.dp_shard": 1,
                 "train.seq_len": 256, "train.global_batch_size": 2, "train.micro_batch_size": 2,
                 "train.dtype": "float32", "train.compile": "false", "data.max_bytes": 100_000,
                 "output.progress": False}
    torchrun(2, "_flex_cp_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    r = torch.load(out)
    layers = hf_config(ModelConfig(preset=preset)).num_hidden_layers
    assert r["packed"] and r["calls"] == 2 * layers  # every block of the probe and of the step
    dense, flexed = r["dense"], r["flex"]
    torch.testing.assert_close(flexed["logits"], dense["logits"], rtol=1e-4, atol=1e-4)
    assert flexed["loss"] == pytest.approx(dense["loss"], rel=1e-6)
    _assert_grads_close(flexed["grads"], dense["grads"])


def _cfg(**overrides: str):
    return load_config(None, {"parallel.tp": "1", **overrides})


@pytest.mark.parametrize("overrides,device,expect", [
    ({}, "cuda", True),
    ({}, "cpu", False),
    ({"model.packed_attention": "mask"}, "cuda", False),
    ({"model.attn_implementation": "eager"}, "cuda", False),
    ({"train.cudagraphs": "true"}, "cuda", False),
    ({"train.compile": "false"}, "cuda", False),
    ({"train.compile": "false", "model.packed_attention": "flex"}, "cuda", True),
])
def test_auto_takes_flex_where_it_can_train(overrides, device, expect):
    assert uses_flex(_cfg(**overrides), hf_config(ModelConfig()), device) is expect


def test_auto_leaves_attention_dropout_to_the_mask():
    config = hf_config(ModelConfig())
    config.attention_dropout = 0.1
    assert not uses_flex(_cfg(), config, "cuda")


@pytest.mark.parametrize("overrides,device,reason", [
    ({}, "cpu", "needs CUDA GPUs"),
    ({"model.attn_implementation": "eager"}, "cuda", "not model.attn_implementation=eager"),
    ({"train.cudagraphs": "true"}, "cuda", "CUDA graphs"),
])
def test_flex_asked_for_where_it_cannot_train_is_one_line(overrides, device, reason):
    cfg = _cfg(**{"model.packed_attention": "flex", **overrides})
    with pytest.raises(ConfigError, match=reason) as err:
        uses_flex(cfg, hf_config(ModelConfig()), device)
    assert "\n" not in str(err.value) and "model.packed_attention=auto or mask" in str(err.value)


def test_preflight_refuses_flex_on_cpu():
    with pytest.raises(ConfigError, match="needs CUDA GPUs"):
        preflight(_cfg(**{"model.packed_attention": "flex"}), 1, "bench")


def test_packed_attention_choices():
    with pytest.raises(ConfigError, match="model.packed_attention"):
        _cfg(**{"model.packed_attention": "dense"})
