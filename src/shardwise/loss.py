"""Cross-entropy as a token-level mean over the global optimizer step.

Each micro-batch contributes ``sum(CE over its tokens) / N_global`` where ``N_global`` counts
every non-ignored label in the step on every data- and context-parallel rank. Summed over
micro-batches and those ranks, that is exactly the mean over the global batch, whatever the layout
or the padding.
With loss parallelism the logits stay vocab-sharded (a ``Shard(-1)`` DTensor) and the loss is
Megatron's vocab-parallel cross-entropy on the local shards: every TP rank ends with the same
value, so it is counted once (reduced over DP and CP ranks only), never summed over TP ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor

from shardwise.tp import Group, all_reduce_no_grad, reduce_from_group

IGNORE_INDEX = -100
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of token losses over whole-vocabulary logits, in fp32."""
    return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), reduction="sum", ignore_index=IGNORE_INDEX)


class _TargetLogit(torch.autograd.Function):
    """Each row's value at its column ``local`` (0 where ``local`` is outside the row), with a backward that
    compares column numbers instead of scattering. A gather's backward writes a zeroed fp32 (tokens x vocab)
    tensor and scatters into it, which compiled stays a pass of its own: at Qwen2-1.5B shapes on 2xH100 the
    vocab-parallel loss took 2.2x the GPU time of the whole-vocabulary one over as many logits, and 4 bytes per
    logit more at its peak (BENCHMARKS.md, session 12). Compiled, this backward fuses into the softmax's; eager,
    it makes the same one (tokens x vocab) gradient as a gather's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        mine = (local >= 0) & (local < x.shape[-1])
        ctx.save_for_backward(local)
        ctx.columns = x.shape[-1]
        picked = x.gather(-1, local.clamp(0, x.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
        return torch.where(mine, picked, 0.0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (local,) = ctx.saved_tensors
        columns = torch.arange(ctx.columns, device=local.device)
        return torch.where(columns == local.unsqueeze(-1), grad.unsqueeze(-1), 0.0), None


def vocab_parallel_cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor, g: Group) -> torch.Tensor:
    """The same sum from this rank's vocabulary columns: the max, the sum of exponentials and the target's
    logit are all-reduced over TP ranks (scalars per token), so no rank ever holds a whole row.

    Every TP rank computes the same loss and backpropagates it, so the sums' backward is the identity
    (``reduce_from_group``), and only the rank holding a token's target gets its -1.

    The target's logit is picked by ``_TargetLogit``, whose backward compiles into the softmax's (see there).
    """
    x = logits.flatten(0, -2).float()
    labels = labels.flatten()
    rows = x.shape[-1]
    shifted = x - all_reduce_no_grad(x.max(dim=-1).values, g, "max").unsqueeze(-1)
    log_sum_exp = reduce_from_group(shifted.exp().sum(dim=-1), g).log()
    local = labels - g.rank * rows  # outside [0, rows): another rank's column, or ignored; 0 here
    target = reduce_from_group(_TargetLogit.apply(shifted, local), g)
    return torch.where(labels != IGNORE_INDEX, log_sum_exp - target, 0.0).sum()


def _summed(full: LossFn, sharded: Callable[[torch.Tensor, torch.Tensor, Group], torch.Tensor]) -> LossFn:
    def summed(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if isinstance(logits, DTensor):
            return sharded(logits.to_local(), labels, Group.of(logits.device_mesh))
        return full(logits, labels)
    return summed


summed_cross_entropy: LossFn = _summed(cross_entropy_sum, vocab_parallel_cross_entropy_sum)
summed_cross_entropy.__doc__ = "Sum of token losses in fp32, for whole or vocab-sharded (DTensor) logits."


def loss_fn(compiled: bool) -> LossFn:
    """``summed_cross_entropy``, compiled when asked: fusing the fp32 upcast, (log-)softmax and gather
    saves several passes over the (tokens x vocab) logits."""
    if not compiled:
        return summed_cross_entropy
    return _summed(torch.compile(cross_entropy_sum), torch.compile(vocab_parallel_cross_entropy_sum))


def global_token_count(micro_labels: list[torch.Tensor], mesh: DeviceMesh) -> torch.Tensor:
    """Non-ignored labels of the whole step, summed over micro-batches and the ranks of ``mesh`` (DP x CP), at
    least 1: a float64 scalar on the group's device, left there so that the step's kernels need not wait for it."""
    count = torch.stack([(lab != IGNORE_INDEX).sum() for lab in micro_labels]).sum().to(torch.float64)
    group = mesh.get_group()
    count = count.to(_comm_device(group))
    dist.all_reduce(count, group=group)
    return count.clamp(min=1)


def reduce_over_ranks(value: torch.Tensor, mesh: DeviceMesh) -> torch.Tensor:
    """Sum a per-rank scalar (or a few, stacked) over the ranks of ``mesh``: data- and context-parallel ranks, each
    holding the sum over its own tokens (TP ranks hold the same value, so they are left out). Float64, on the group's
    device: reading it (``float``) waits for the GPU, which the trainer does once, at the end of a step."""
    value = value.detach().to(torch.float64).to(_comm_device(mesh.get_group()))
    dist.all_reduce(value, group=mesh.get_group())
    return value


def _comm_device(group: dist.ProcessGroup) -> torch.device:
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
