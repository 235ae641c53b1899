"""Cross-entropy as a token-level mean over the global optimizer step.

Each micro-batch contributes ``sum(CE over its tokens) / N_global`` where ``N_global`` counts
every non-ignored label in the step on every data-parallel rank. Summed over micro-batches and
DP ranks, that is exactly the mean over the global batch, whatever the layout or the padding.
With loss parallelism the logits stay vocab-sharded and the CE result is a replicated DTensor:
taking its local value once (never all-reducing it over TP ranks) avoids double counting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import loss_parallel

IGNORE_INDEX = -100


def loss_context(enabled: bool) -> contextlib.AbstractContextManager:
    """Loss parallel must wrap both the loss and its backward."""
    return loss_parallel() if enabled else contextlib.nullcontext()


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of token losses in fp32; logits may be a vocab-sharded DTensor (under ``loss_context``)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum", ignore_index=IGNORE_INDEX)


def loss_fn(compiled: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The summed CE, compiled when asked: fusing the fp32 upcast, log-softmax and gather saves
    several passes over the (tokens x vocab) logits. Vocab-sharded DTensor logits stay eager."""
    return torch.compile(summed_cross_entropy) if compiled else summed_cross_entropy


def global_token_count(micro_labels: list[torch.Tensor], dp_mesh: DeviceMesh) -> int:
    """Non-ignored labels of the whole step, summed over micro-batches and DP ranks."""
    count = torch.tensor(sum(int((lab != IGNORE_INDEX).sum()) for lab in micro_labels), dtype=torch.float64)
    group = dp_mesh.get_group()
    count = count.to(_comm_device(group))
    dist.all_reduce(count, group=group)
    return int(count.item())


def local_value(loss: torch.Tensor) -> torch.Tensor:
    """A loss scalar as a plain tensor; a replicated DTensor already holds the TP-reduced value."""
    return loss.to_local() if isinstance(loss, DTensor) else loss


def reduce_over_dp(value: torch.Tensor, dp_mesh: DeviceMesh) -> float:
    """Sum one per-rank scalar over data-parallel ranks only (TP ranks hold the same value)."""
    value = value.detach().to(torch.float64).to(_comm_device(dp_mesh.get_group()))
    dist.all_reduce(value, group=dp_mesh.get_group())
    return float(value.item())


def _comm_device(group: dist.ProcessGroup) -> torch.device:
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
