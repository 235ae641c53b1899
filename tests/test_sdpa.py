from __future__ import annotations

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from shardwise import sdpa
from shardwise.config import ModelConfig
from shardwise.model import build_meta_model, hf_config
from shardwise.plans.decoder import head_dim


class _Cuda(torch.Tensor):
    """A CPU tensor that says it is on a GPU: what ``repeats_kv`` reads."""

    is_cuda = True


def test_repeats_grouped_fp32_heads_on_gpus_only_where_no_mask_is_given():
    """sdpa reads grouped heads only in 16-bit kernels on GPUs; fp32 gets K/V repeated, unless a mask makes
    transformers repeat them itself, and nothing else changes."""
    q, kv = torch.zeros(1, 4, 8, 16), torch.zeros(1, 2, 8, 16)
    gpu = q.as_subclass(_Cuda)
    assert sdpa.repeats_kv(gpu, kv, None)
    assert not sdpa.repeats_kv(gpu, kv, torch.ones(1, 1, 8, 8, dtype=torch.bool))  # transformers repeats them
    assert not sdpa.repeats_kv(gpu.to(torch.bfloat16), kv, None)  # flash and cuDNN read grouped heads
    assert not sdpa.repeats_kv(q, kv, None)  # CPU
    assert not sdpa.repeats_kv(gpu, torch.zeros(1, 4, 8, 16), None)  # no groups
    assert sdpa.needs_repeat("sdpa", torch.float32, "cuda", context=False)
    for args in (("eager", torch.float32, "cuda", False), ("sdpa", torch.bfloat16, "cuda", False),
                 ("sdpa", torch.float32, "cpu", False), ("sdpa", torch.float32, "cuda", True)):
        assert not sdpa.needs_repeat(*args)


@pytest.mark.parametrize("preset", ["tiny-qwen2", "tiny-llama"])
def test_repeated_kv_attends_as_grouped_heads(monkeypatch, preset):
    """Through ``sdpa_attention`` with K/V repeated, a layer's attention output and its gradients equal
    transformers' sdpa over the grouped heads (the layer's own module: scaling, causality)."""
    config = hf_config(ModelConfig(preset=preset))
    module = build_meta_model(config).layers[0].self_attn
    heads, kv, hd = config.num_attention_heads, config.num_key_value_heads, head_dim(config)
    assert heads > kv
    torch.manual_seed(0)
    inputs = [torch.randn(2, n, 24, hd, requires_grad=True) for n in (heads, kv, kv)]
    want, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, *inputs, None, scaling=hd ** -0.5)
    want_grads = torch.autograd.grad(want.square().sum(), inputs)
    monkeypatch.setattr(sdpa, "repeats_kv", lambda *_: True)
    got, _ = sdpa.sdpa_attention(module, *inputs, None, scaling=hd ** -0.5)
    got_grads = torch.autograd.grad(got.square().sum(), inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
