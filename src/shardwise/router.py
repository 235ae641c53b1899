"""The load-balancing loss of a mixture of experts' routers, as transformers adds it to the training loss.

Where a config sets ``output_router_logits``, transformers' ``*ForCausalLM`` adds ``router_aux_loss_coef`` times
Switch Transformer's loss (``load_balancing_loss_func``): over every sparse layer's tokens together, with ``f_e`` the
share of (token, top-k slot) pairs routed to expert ``e`` and ``P_e`` its mean router probability,
``num_experts * sum_e f_e * P_e``. Without it nothing keeps a router from sending most tokens to a few experts.

shardwise computes the same sums where the tokens are: a forward hook on each router (the class transformers records
router logits from, ``_can_record_outputs``) sums its layer's counts and probabilities over this rank's tokens, and
one all-reduce per micro-batch over the ranks that share its tokens (TP's sequence shards, CP's chunks) completes
them. That all-reduce's backward is the identity, so each rank differentiates its own tokens' probabilities, as
every activation under sequence parallelism. ``train.forward_backward`` adds ``coef`` times the mean over the step's
micro-batches (of every DP rank): the gradients of one process running the same micro-batches, which
``shardwise.verify`` checks against transformers' own ``aux_loss``. Layout padding (``Layout.seq_multiple``) is left
out; a row's own padding (``data.packing=false``) counts, as in transformers given no attention mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig

from shardwise.config import Config, ConfigError
from shardwise.model import CausalLM
from shardwise.plans.decoder import num_experts
from shardwise.tp import Group, reduce_from_group


def coefficient(cfg: Config, config: PretrainedConfig) -> float:
    """``train.router_aux_loss`` for this model: ``auto`` is transformers' choice (``router_aux_loss_coef`` where
    the config sets ``output_router_logits``, else 0); a coefficient is refused for a model without experts."""
    coef = cfg.train.router_coefficient()
    if coef is None:
        asked = getattr(config, "output_router_logits", False) and num_experts(config)
        return float(getattr(config, "router_aux_loss_coef", 0.0) or 0.0) if asked else 0.0
    if coef and not num_experts(config):
        raise ConfigError(f"train.router_aux_loss={cfg.train.router_aux_loss}: {config.model_type} has no experts "
                          "to balance; leave it at auto or set 0")
    return coef


def layer_sums(logits: torch.Tensor, top_k: int, experts: int, weights: torch.Tensor | None) -> torch.Tensor:
    """One router's ``(tokens, experts)`` logits -> ``[counts (experts), probability sums (experts), tokens]``, each
    token weighted by ``weights`` (1, or 0 for padding). The softmax and top-k are transformers' own, in the
    logits' dtype; the sums in fp32."""
    probs = F.softmax(logits, dim=-1)
    chosen = torch.topk(probs, top_k, dim=-1).indices
    w = torch.ones(logits.shape[0], device=logits.device) if weights is None else weights
    counts = torch.zeros(experts, device=logits.device).scatter_add_(0, chosen.flatten(), w.repeat_interleave(top_k))
    return torch.cat([counts, (probs.float() * w[:, None]).sum(0), w.sum().reshape(1)])


class RouterLoss:
    """Hooks on the model's routers, and the micro-batch's loss from what they saw (``begin``, forward, ``loss``)."""

    def __init__(self, model: CausalLM, coef: float, tp: Group | None = None, cp: Group | None = None):
        """``tp``: the TP group where sequence parallelism cuts each micro-batch's tokens over it; ``cp``: the CP group
        where context parallelism does. The sums are completed over both."""
        recorder = getattr(type(model.hf.model), "_can_record_outputs", {}).get("router_logits")
        if recorder is None:
            raise ConfigError(f"{model.config.model_type}: transformers records no router logits for this model, "
                              "so its load-balancing loss cannot be added; set train.router_aux_loss=0")
        self.coef, self.tp, self.groups, self.index = coef, tp, tuple(g for g in (tp, cp) if g), recorder.index
        self.experts, self.top_k = num_experts(model.config), model.config.num_experts_per_tok
        self.routers = [m for m in model.hf.modules() if isinstance(m, recorder.target_class)]
        for router in self.routers:
            router.load_sums = None
            router.register_forward_hook(self._record)
        self.weights: torch.Tensor | None = None
        self.step_sum: torch.Tensor | None = None  # this rank's losses of the step so far, detached
        self.step_mean: torch.Tensor | None = None  # the step's mean over every DP rank (``train.forward_backward``)

    def _record(self, module: torch.nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
        """Each router keeps its own sums (one list growing over the layers would make compiled blocks guard on
        its length: a graph per layer)."""
        logits = output[self.index] if isinstance(output, tuple) else output
        module.load_sums = layer_sums(logits, self.top_k, self.experts, self.weights)

    def begin(self, input_ids: torch.Tensor, seq_len: int, first: bool) -> None:
        """Before the forward of a local micro-batch (``input_ids``, rows of ``seq_len`` tokens before TP's padding);
        ``first`` of its step. (Hooks also record in evaluation and in checkpointed blocks' recomputation; the next
        forward overwrites that.)"""
        self.weights = token_weights(input_ids.shape, seq_len, self.tp, input_ids.device)
        if first:
            self.step_sum = None

    def loss(self) -> torch.Tensor:
        """The micro-batch's load-balancing loss (unscaled), the same on every rank sharing its tokens."""
        sums = torch.stack([router.load_sums for router in self.routers]).sum(0)
        for router in self.routers:  # read once: a router that did not run fails the next read, not reuses these
            router.load_sums = None
        for g in self.groups:
            sums = reduce_from_group(sums, g)
        e = self.experts
        counts, probs, tokens = sums[:e], sums[e : 2 * e], sums[-1]
        value = e * (counts / tokens * probs / tokens).sum()
        detached = value.detach()
        self.step_sum = detached if self.step_sum is None else self.step_sum + detached
        return value


def token_weights(shape: torch.Size, seq_len: int, tp: Group | None, device: torch.device) -> torch.Tensor | None:
    """1 for each token this rank's routers see that a row holds, 0 for the padding that evens TP's shards
    (``data.pad_to_multiple``): the micro-batch's ``(rows, padded length)`` tokens in row-major order, cut into
    ``tp`` pieces under sequence parallelism (``tp``), else all of them. None where nothing is padded."""
    rows, length = shape
    if length <= seq_len:  # whole rows, or context parallelism's chunks of them (which it never pads)
        return None
    weights = (torch.arange(length, device=device) < seq_len).float().expand(rows, length).flatten()
    return weights if tp is None else weights.chunk(tp.size)[tp.rank]
