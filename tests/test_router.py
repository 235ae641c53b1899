"""The routers' load-balancing loss (``shardwise.router``) against transformers' own; its layouts are proven by
``test_parallelize`` (every mixture of experts there trains with it) and its logged value by ``test_export``."""

from __future__ import annotations

import pytest
import torch
from conftest import compiled_step
from transformers import AutoModelForCausalLM

from shardwise.config import ConfigError, ModelConfig, load_config
from shardwise.model import CausalLM, hf_config, init_weights
from shardwise.router import RouterLoss, coefficient, token_weights
from shardwise.tp import Group


@pytest.mark.parametrize("preset", ["tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe", "tiny-olmoe"])
@pytest.mark.parametrize("padded", [False, True])
def test_the_loss_and_its_gradient_are_transformers(preset, padded):
    """One process: the loss from the routers' hooks, and its gradient in every parameter, are transformers'
    ``aux_loss`` (all of its layers' routers, Qwen2-MoE's dense layer skipped); with a row padded at its end, as
    tensor parallelism pads, the padding left out as transformers' attention mask leaves it out (fp32)."""
    config = hf_config(ModelConfig(preset=preset))
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    init_weights(CausalLM(hf), torch.device("cpu"), 0)
    ids = torch.randint(0, config.vocab_size, (2, 15), generator=torch.Generator().manual_seed(0))
    length = 16 if padded else 15
    ids = torch.cat([ids, torch.zeros(2, length - 15, dtype=torch.long)], dim=1)
    positions = torch.arange(length).expand(2, length)
    mask = (positions < 15).long()
    want = hf(input_ids=ids, position_ids=positions, attention_mask=mask, output_router_logits=True).aux_loss
    want_grads = torch.autograd.grad(want, list(hf.parameters()), allow_unused=True)

    model = CausalLM(hf)
    router = RouterLoss(model, 1.0)
    assert len(router.routers) == config.num_hidden_layers - len(getattr(config, "mlp_only_layers", []))
    router.begin(ids, 15, first=True)
    model(ids, positions)
    got = router.loss()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    grads = torch.autograd.grad(got, list(hf.parameters()), allow_unused=True)
    for (name, _), mine, theirs in zip(hf.named_parameters(), grads, want_grads, strict=True):
        assert (mine is None) == (theirs is None), name
        if theirs is not None:
            assert (mine - theirs).norm() <= 1e-5 * theirs.norm(), name


def test_token_weights_leave_out_the_padding_of_this_ranks_shard():
    """Rows of 3 tokens padded to 4 (tp=2): every rank's half of the row-major tokens, the pad weighted 0; unpadded
    rows and context parallelism's chunks (shorter than a row) need none."""
    whole = token_weights(torch.Size([2, 4]), 3, None, torch.device("cpu"))
    assert whole.tolist() == [1, 1, 1, 0, 1, 1, 1, 0]
    assert token_weights(torch.Size([2, 4]), 3, Group("tp", 2, 1), torch.device("cpu")).tolist() == [1, 1, 1, 0]
    assert token_weights(torch.Size([2, 4]), 4, Group("tp", 2, 0), torch.device("cpu")) is None
    assert token_weights(torch.Size([2, 8]), 16, None, torch.device("cpu")) is None


@pytest.mark.parametrize("flag,asked,want", [("auto", True, 0.02), ("auto", False, 0.0), ("0.5", False, 0.5),
                                             ("0", True, 0.0)])
def test_the_coefficient_is_the_flag_else_transformers_choice(flag, asked, want):
    config = hf_config(ModelConfig(preset="tiny-mixtral"))
    config.output_router_logits, config.router_aux_loss_coef = asked, 0.02
    assert coefficient(load_config(None, {"train.router_aux_loss": flag}), config) == want


@pytest.mark.parametrize("flag,error", [
    ("-1", "train.router_aux_loss=-1 must be auto or a coefficient >= 0"),
    ("lots", "train.router_aux_loss=lots must be auto or a coefficient >= 0"),
    ("nan", "train.router_aux_loss=nan must be auto or a coefficient >= 0")])
def test_a_bad_coefficient_is_refused_in_one_line(flag, error):
    with pytest.raises(ConfigError, match=error):
        load_config(None, {"train.router_aux_loss": flag})


def test_a_dense_model_refuses_a_coefficient_and_toml_may_give_a_number(tmp_path):
    (tmp_path / "job.toml").write_text("[train]\nrouter_aux_loss = 0.01\n")
    cfg = load_config(str(tmp_path / "job.toml"), {})
    assert cfg.train.router_aux_loss == "0.01"
    with pytest.raises(ConfigError, match="qwen2 has no experts to balance; leave it at auto or set 0"):
        coefficient(cfg, hf_config(ModelConfig(preset="tiny-qwen2")))


def test_compiled_blocks_with_the_hooks_are_one_graph_with_eager_gradients(tmp_path):
    """tp=2 with sequence parallelism, rows padded (31 tokens), full activation checkpointing (the hooks run again
    in the recomputation): every block one graph without breaks (a list of the layers' sums had dynamo guard on
    its length, a graph per layer), and the compiled step's loss and gradients the eager step's."""
    compiled_step(tmp_path, {"model.preset": "tiny-olmoe", "parallel.tp": 2, "parallel.dp_shard": 1,
                             "train.activation_checkpointing": "full", "train.seq_len": 31, "train.global_batch_size": 4,
                             "train.micro_batch_size": 2, "train.dtype": "float32", "output.progress": False,
                             "train.router_aux_loss": "1.0"})
