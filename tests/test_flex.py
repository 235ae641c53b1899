from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.attention.flex_attention import flex_attention
from transformers import AutoModelForCausalLM

from shardwise import flex
from shardwise.config import ConfigError, ModelConfig, load_config
from shardwise.flex import uses_flex
from shardwise.launch import preflight
from shardwise.model import SHIPPED_PRESETS, CausalLM, document_mask, hf_config, init_weights
from shardwise.parallelize import apply_flex
from shardwise.plans import model_forward


def _sdpa_presets() -> list[str]:
    return [p for p in SHIPPED_PRESETS if p.startswith("tiny-")
            and not model_forward(hf_config(ModelConfig(preset=p))).errors()]


@pytest.mark.parametrize("preset", _sdpa_presets())
def test_block_masks_attend_as_the_dense_mask(preset, monkeypatch):
    """The same model answers the same with flex ``BlockMask``s as with sdpa's dense masks: packed documents
    shorter and longer than a 128-token tile and than the presets' sliding windows (64), and a row without a
    boundary, which keeps sdpa's unmasked causal path. Forward only: flex has no backward on CPU; on GPUs
    ``benchmarks/gpu_smoke.sh`` trains both ways and compares the losses."""
    config = hf_config(ModelConfig(preset=preset))
    model = CausalLM(AutoModelForCausalLM.from_config(config, dtype=torch.float32))
    init_weights(model, torch.device("cpu"), seed=1)
    ids = torch.randint(0, 256, (3, 300))
    positions = torch.stack([torch.cat([torch.arange(n) for n in (40, 150, 3, 107)]),
                             torch.cat([torch.arange(20, 200), torch.arange(120)]), torch.arange(300)])
    calls = []
    monkeypatch.setattr(flex, "flex_attention", lambda *a, **k: calls.append(1) or flex_attention(*a, **k))
    with torch.no_grad():
        dense = model(ids, positions)
        assert not calls
        apply_flex(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flex warns that uncompiled it materializes the scores
            flexed = model(ids, positions)
    assert len(calls) == config.num_hidden_layers  # each block's attention went through flex
    torch.testing.assert_close(flexed, dense, rtol=1e-4, atol=1e-4)  # fp32, other summation orders


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
    assert uses_flex(_cfg(**overrides), hf_config(ModelConfig()), 1, device) is expect


def test_auto_leaves_context_parallelism_and_dropout_to_the_mask():
    config = hf_config(ModelConfig())
    assert not uses_flex(_cfg(), config, 2, "cuda")
    config.attention_dropout = 0.1
    assert not uses_flex(_cfg(), config, 1, "cuda")


@pytest.mark.parametrize("overrides,cp,device,reason", [
    ({}, 1, "cpu", "needs CUDA GPUs"),
    ({}, 2, "cuda", "context parallelism"),
    ({"model.attn_implementation": "eager"}, 1, "cuda", "not model.attn_implementation=eager"),
    ({"train.cudagraphs": "true"}, 1, "cuda", "CUDA graphs"),
])
def test_flex_asked_for_where_it_cannot_train_is_one_line(overrides, cp, device, reason):
    cfg = _cfg(**{"model.packed_attention": "flex", **overrides})
    with pytest.raises(ConfigError, match=reason) as err:
        uses_flex(cfg, hf_config(ModelConfig()), cp, device)
    assert "\n" not in str(err.value) and "model.packed_attention=auto or mask" in str(err.value)


def test_preflight_refuses_flex_on_cpu():
    with pytest.raises(ConfigError, match="needs CUDA GPUs"):
        preflight(_cfg(**{"model.packed_attention": "flex"}), 1, "bench")


def test_packed_attention_choices():
    with pytest.raises(ConfigError, match="model.packed_attention"):
        _cfg(**{"model.packed_attention": "dense"})
