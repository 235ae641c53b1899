from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from shardwise.config import ConfigError, ModelConfig, load_config
from shardwise.cp import sequence_order
from shardwise.model import (
    SHIPPED_PRESETS,
    CausalLM,
    build_meta_model,
    context_mask,
    document_ids,
    document_mask,
    flop_params,
    hf_config,
    init_weights,
    num_params,
    own_rows,
    ring_note,
)
from shardwise.parallelize import check_divisibility, divisibility_errors
from shardwise.plans import PLANS, get_plan, model_forward
from shardwise.tp import Group
from shardwise.verify import resize


def _accepted(preset: str, attn: str) -> bool:
    return not model_forward(hf_config(ModelConfig(preset=preset, attn_implementation=attn))).errors()


@pytest.mark.parametrize("preset,attn", [(p, a) for p in SHIPPED_PRESETS if p.startswith("tiny-") for a in ("sdpa", "eager")
                                         if _accepted(p, a)])
def test_forward_with_explicit_positions_equals_hf_forward(preset, attn):
    """CausalLM.forward (own loop, explicit positions, the architecture's DecoderForward) computes exactly
    what HF's forward does: one row of two packed documents, one plain row, both longer than the
    presets' sliding windows (64), so windowed and document masks combine; embedding scales, logit
    caps and multipliers included. Only Gemma 2 with sdpa is left out: it is refused (below)."""
    config = hf_config(ModelConfig(preset=preset, attn_implementation=attn))
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = CausalLM(hf)
    init_weights(model, torch.device("cpu"), seed=1)
    ids = torch.randint(0, 256, (2, 100))
    positions = torch.stack([torch.cat([torch.arange(70), torch.arange(30)]), torch.arange(100)])
    ours = model(ids, positions)
    torch.testing.assert_close(ours, hf(input_ids=ids, position_ids=positions).logits, rtol=0, atol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("cp", [2, 4])
def test_context_mask_is_the_document_mask_seen_from_each_rank(attn, window, cp):
    """Each CP rank's mask (its queries x every rank's keys, in all-gather order) holds exactly its rows of the
    one-process mask, the columns permuted: documents spanning chunks of several ranks, windows, two rows."""
    positions = torch.stack([torch.cat([torch.arange(3), torch.arange(13), torch.arange(7), torch.arange(9)]),
                             torch.cat([torch.arange(20, 30), torch.arange(22)])])
    full = document_mask(positions, attn, torch.float32, packed=True, window=window)
    order = sequence_order(positions.shape[1], cp)
    for rank in range(cp):
        local = order.view(cp, -1)[rank]
        mask = context_mask(document_ids(positions), Group("cp", cp, rank), attn, torch.float32, window=window)
        assert torch.equal(mask, full[:, :, local][:, :, :, order]), rank


@pytest.mark.parametrize("attn,window,expect_mask", [("sdpa", None, False), ("sdpa", 5, True), ("eager", None, True)])
def test_whole_rows_need_a_context_mask_only_for_windows_or_eager(attn, window, expect_mask):
    """Without a document boundary, sdpa under CP attends causally with no mask (``cp.chunk_pair_attention``);
    a window shorter than the rows or eager attention still need one, and one boundary brings it back."""
    whole = document_ids(torch.arange(32).expand(2, 32))
    g = Group("cp", 2, 1)
    assert (context_mask(whole, g, attn, torch.float32, window=window) is not None) == expect_mask
    packed = document_ids(torch.stack([torch.arange(32), torch.cat([torch.arange(20), torch.arange(12)])]))
    assert context_mask(packed, g, attn, torch.float32, window=window) is not None


@pytest.mark.parametrize("overrides,note", [
    ({"parallel.cp_exchange": "allgather"}, None),
    ({"data.packing": "false"}, None),
    ({}, ("data.packing=true (rows with a document boundary) keep that attention on the all-gather; "
          "set data.packing=false for one document per row")),
    ({"data.packing": "false", "model.attn_implementation": "eager"}, "model.attn_implementation=eager keep"),
    ({"data.packing": "false", "model.preset": "tiny-gemma2", "model.attn_implementation": "eager",
      "train.seq_len": "128"}, "eager and 2 layers' sliding windows, shorter than train.seq_len keep"),
    ({"data.packing": "false", "parallel.cp": "1"}, "parallel.cp_exchange=ring has no effect with parallel.cp=1"),
])
def test_the_ring_says_which_attention_it_cannot_carry(overrides, note):
    """``parallel.cp_exchange=ring`` takes only attention that needs no mask; the rest is named in one line."""
    cfg = load_config(None, {"parallel.cp": "2", "parallel.cp_exchange": "ring", **overrides})
    line = ring_note(cfg)
    assert line == note if note is None else note in line


def test_soft_capped_attention_refuses_sdpa():
    """Gemma 2 caps attention logits, which sdpa cannot: one line before anything is built."""
    config = hf_config(ModelConfig(preset="tiny-gemma2"))
    assert [p for p in SHIPPED_PRESETS if p.startswith("tiny-") and not _accepted(p, "sdpa")] == ["tiny-gemma2"]
    with pytest.raises(ConfigError, match=r"^gemma2 soft-caps attention logits \(attn_logit_softcapping=50.0\), which "
                                          r"sdpa cannot .*; set model.attn_implementation=eager$"):
        check_divisibility(config, load_config(None, {}), 2)


@pytest.mark.parametrize("preset,dense", [("tiny-mixtral", {}), ("tiny-olmoe", {}), ("tiny-qwen3-moe", {}),
                                          ("tiny-qwen3-moe", {"decoder_sparse_step": 2}),
                                          ("tiny-qwen2-moe", {}), ("tiny-qwen2", {})])
def test_intermediate_size_must_divide_tp_only_where_a_block_splits_it(preset, dense):
    """TP splits the dense MLP, not the experts: all-sparse Mixtral, OLMoE and Qwen3-MoE take any tp their heads
    and vocabulary allow, whatever ``intermediate_size`` is; a model with a dense block (Qwen2-MoE's
    ``mlp_only_layers``, a ``decoder_sparse_step`` of 2, a dense model) is refused with the tp values to use."""
    config = resize(hf_config(ModelConfig(preset=preset)), intermediate_size=351, **dense)
    errors = divisibility_errors(config, load_config(None, {}), 2)
    want = ["intermediate size (351) is not divisible by parallel.tp=2; use parallel.tp in [1]"]
    assert errors == (want if dense or preset in ("tiny-qwen2-moe", "tiny-qwen2") else [])


def test_attention_per_sequence_splits_no_heads_but_needs_micro_batches_of_tp_rows():
    """At tp=8 tiny-qwen2's 4 query heads cannot be split, but computed per sequence they need not be;
    what that needs instead, micro-batches of a multiple of 8 sequences on each DP rank, is one line naming the
    micro-batch (or, where no multiple of 8 divides a rank's share, the global batch) to use."""
    config = hf_config(ModelConfig(preset="tiny-qwen2"))
    heads = divisibility_errors(config, load_config(None, {"train.micro_batch_size": 8}), 8)
    assert heads == [("attention heads (4) is not divisible by parallel.tp=8; use parallel.tp in [1, 2, 4], or "
                      "parallel.tp_attention=sequences (every head on each rank)")]  # the refusal names it
    for flags in ({"train.micro_batch_size": 4}, {"parallel.sequence_parallel": False}):  # where it would not run
        assert divisibility_errors(config, load_config(None, {"train.global_batch_size": 8, **flags}), 8) == [
            "attention heads (4) is not divisible by parallel.tp=8; use parallel.tp in [1, 2, 4]"]

    def errors(gb: int, mb: int, dp: int) -> list[str]:
        cfg = load_config(None, {"parallel.tp_attention": "sequences", "train.global_batch_size": gb,
                                 "train.micro_batch_size": mb})
        return divisibility_errors(config, cfg, 8, dp)

    assert errors(16, 8, 1) == errors(32, 16, 2) == []
    fix = "parallel.tp_attention=sequences needs micro-batches of a multiple of parallel.tp=8 sequences, not {}" \
          " (each TP rank attends over whole sequences); set {}, or parallel.tp_attention=heads"
    assert errors(32, 6, 1) == [fix.format(6, "train.micro_batch_size=8")]
    assert errors(48, 12, 2) == [fix.format(12, "train.micro_batch_size=8")]
    assert errors(12, 6, 1) == [fix.format(6, "train.global_batch_size=16 and train.micro_batch_size=8")]


def test_each_tp_rank_attends_over_the_rows_sequence_parallelism_gives_it():
    """SP cuts a micro-batch's tokens row after row into tp pieces: rank r of tp holds rows [r*b/tp, (r+1)*b/tp), and
    attention per sequence reads their positions; a micro-batch that does not split into whole rows is one line."""
    positions = torch.arange(4 * 6).view(4, 6)
    tokens = positions.flatten().chunk(2)  # what each of 2 ranks holds under SP
    for rank in range(2):
        assert torch.equal(own_rows(positions, Group("tp", 2, rank)).flatten(), tokens[rank])
    with pytest.raises(ConfigError, match=r"^parallel.tp_attention=sequences needs micro-batches of a multiple of "
                                          r"parallel.tp=2 sequences, not 3 .*; set train.micro_batch_size to a "
                                          r"multiple of 2, or parallel.tp_attention=heads$"):
        own_rows(positions[:3], Group("tp", 2, 0))


def test_init_depends_on_seed_only():
    a, b, c = (build_meta_model(hf_config(ModelConfig(preset="tiny-llama"))) for _ in range(3))
    for model, seed in ((a, 0), (b, 0), (c, 1)):
        init_weights(model, torch.device("cpu"), seed)
    wa, wb, wc = (m.hf.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert abs(wa.std().item() - a.config.initializer_range) < 2e-3


@pytest.mark.parametrize("preset", ["tiny-qwen2", "tiny-gemma3"])
def test_a_tied_model_initialized_in_one_process_stays_tied(preset):
    """``to_empty`` gives tied plain parameters separate storage (DTensors of FSDP or TP stay tied): a tied model
    initialized without them (one process, ``train.seed``) must still hold one embedding matrix, which the head
    reads, as HF ties it and as every multi-process layout has it."""
    model = build_meta_model(hf_config(ModelConfig(preset=preset)))
    init_weights(model, torch.device("cpu"), seed=0)
    assert model.hf.lm_head.weight is model.hf.model.embed_tokens.weight
    assert "hf.lm_head.weight" not in dict(model.named_parameters())


def test_param_counts_tied_and_untied():
    tied = build_meta_model(hf_config(ModelConfig(preset="tiny-qwen2")))
    untied = build_meta_model(hf_config(ModelConfig(preset="tiny-llama")))
    embed = 320 * 128
    qkv_bias = 4 * (128 + 2 * 2 * 32)  # qwen2 only: per layer q (hidden) + k, v (kv_heads * head_dim)
    assert num_params(untied) - num_params(tied) == embed - qkv_bias  # untied adds an lm_head matrix
    assert flop_params(tied) == num_params(tied)  # lm_head counted once, as the tied matrix
    assert flop_params(untied) == num_params(untied) - embed


@pytest.mark.parametrize("preset,experts,per_token", [("tiny-qwen2-moe", 8, 2), ("tiny-mixtral", 4, 2),
                                                       ("tiny-olmoe", 8, 2)])
def test_flop_params_count_the_experts_a_token_runs(preset, experts, per_token):
    """MFU's N holds a token's routed experts only (2 of 8, 2 of 4), not every expert; the shared expert, the
    routers and attention whole."""
    model = build_meta_model(hf_config(ModelConfig(preset=preset)))
    routed = sum(p.numel() for name, p in model.named_parameters() if ".mlp.experts." in name)
    assert routed > 0 and routed % experts == 0
    embed = model.hf.model.embed_tokens.weight.numel()
    assert flop_params(model) == num_params(model) - embed - routed + routed // experts * per_token


def test_unknown_preset_and_architecture():
    with pytest.raises(ConfigError, match="choose one of tiny-qwen2"):
        hf_config(ModelConfig(preset="gpt-5"))
    supported = ", ".join(sorted(PLANS))
    with pytest.raises(ConfigError, match=f"'gpt2' is not supported; supported model_type values: {supported}$"):
        get_plan(AutoConfig.for_model("gpt2"), True, True)
    assert set(PLANS) == {"llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3", "olmo2", "granite",
                          "qwen2_moe", "qwen3_moe", "mixtral", "olmoe"}
