"""AdamW, warmup + cosine schedule, and gradient clipping across DTensor meshes.

``clip_grad_norm_`` and foreach optimizer kernels cannot mix DTensors of different meshes, so both
work per mesh group. A tensor-parallel model keeps every parameter on one mesh (``shardwise.tp``:
sharded or replicated on the (dp, tp) mesh, or the tp mesh without FSDP), and a model without TP on
the dp mesh, so each layout has the same optimizer groups, which resuming on another layout needs.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import defaultdict

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from shardwise.config import TrainConfig

# The norm's 2-step all-reduce on 2D meshes is accepted (see clip_grad_norm_); torch >= 2.13 says so in
# a log record on every rank, older versions in a warning.
logging.getLogger("torch.distributed.tensor._redistribute").addFilter(
    lambda record: "sequential all_reduce" not in record.getMessage())


def _mesh_key(p: torch.Tensor) -> object:
    return p.device_mesh if isinstance(p, DTensor) else None


def mesh_groups(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Split tensors into lists that share one device mesh, in first-seen order."""
    groups: dict[object, list[torch.Tensor]] = defaultdict(list)
    for t in tensors:
        groups[_mesh_key(t)].append(t)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """Weight decay on matrices only; one param group per (mesh, decay) so kernels never mix meshes."""
    params = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    groups = []
    for decay in (True, False):
        chosen = [p for p in params if (p.ndim >= 2) == decay]
        groups += [{"params": g, "weight_decay": cfg.weight_decay if decay else 0.0} for g in mesh_groups(chosen)]
    fused = cfg.fused_optimizer and device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None,
                             foreach=None if fused else True)


def lr_lambda(cfg: TrainConfig):
    """Linear warmup to ``train.lr``, then cosine decay to ``train.min_lr_ratio * train.lr``."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))


def step_if(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """``optimizer.step()`` where the device flag ``finite`` holds, otherwise nothing.

    Fused AdamW reads the flag in its kernels (GradScaler's ``found_inf``: set, it leaves the weights, the
    moments and the step count as they were), so the host queues the update without waiting for the GPU; an
    unfused optimizer (CPU) has the host read the flag first.
    """
    if all(group.get("fused") for group in optimizer.param_groups):
        optimizer.found_inf = (~finite).to(torch.float32)
        optimizer.step()
    elif bool(finite):
        optimizer.step()


@torch.no_grad()
def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (any mix of meshes and placements), then clip in place.

    Per mesh group, the DTensor norm reduces over shards and ignores replicas, so each group's
    ``full_tensor()`` is exact; the groups' squares are then summed. Nothing here reads a value on the host or
    copies one from it (either would wait for the GPU): the norm stays on the device.
    """
    grads = [p.grad for p in params if p.grad is not None]
    total_sq = torch.zeros((), dtype=torch.float32, device=grads[0].device if grads else None)
    for group in mesh_groups(grads):
        # Summing squares per placement dim costs one extra small all-reduce on 2D meshes; fine.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*sequential all_reduce.*")
            norm = torch.nn.utils.get_total_norm(group, norm_type=2.0)
            norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
        total_sq = total_sq + (norm.float() ** 2).to(total_sq.device)
    total = total_sq.sqrt()
    if max_norm > 0:
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for group in mesh_groups(grads):
            torch._foreach_mul_(group, coef.to(group[0].device))
    return total
