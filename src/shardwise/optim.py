"""AdamW, warmup + cosine schedule, and gradient clipping across DTensor meshes.

Foreach optimizer kernels cannot mix DTensors of different meshes, so the optimizer's param groups are
per mesh. A tensor-parallel model keeps every parameter on one mesh (``shardwise.tp``: sharded or
replicated on the (dp, tp) mesh, or the tp mesh without FSDP), and a model without TP on the dp mesh,
so each layout has the same optimizer groups, which resuming on another layout needs.

The step's tail (the gradient norm, clipping, the update) runs on the DTensors' local tensors, the
storage they wrap: through DTensor's dispatch, each of those foreach calls over a few hundred
parameters cost the host milliseconds while the GPU, done with the backward, could wait (19 ms of rank 0's 0.34 s
``dp_shard=2`` step at Qwen2-1.5B shapes with its collectives faked on one H200; on two H200s, where the backward's
communication covers most of that time, 1.004-1.008x: BENCHMARKS.md, session 38).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

from shardwise.config import TrainConfig
from shardwise.tp import local_tensor


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
    elif not bool(finite):
        return
    with on_local_tensors(optimizer):
        optimizer.step()


@contextmanager
def on_local_tensors(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Within, the optimizer's parameters, their gradients and its state are the DTensors' local tensors: the
    same storage, updated in place by the same kernels (bit for bit what DTensor's dispatch would run), without
    that dispatch's host time. Once every parameter with a gradient has state, that is; the first step creates
    the state through the DTensors themselves, as DCP saves and loads it."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not all(optimizer.state.get(p) for p in params):
        yield
        return
    kept_params, kept_state = [group["params"] for group in optimizer.param_groups], optimizer.state
    swapped: defaultdict[torch.Tensor, dict] = defaultdict(dict)
    for p in params:
        swapped[local_tensor(p)] = {k: local_tensor(v) for k, v in kept_state[p].items()}
        local_tensor(p).grad = local_tensor(p.grad)
    for group, kept in zip(optimizer.param_groups, kept_params, strict=True):
        group["params"] = [local_tensor(p) for p in kept]
    optimizer.state = swapped
    try:
        yield
    finally:
        optimizer.state = kept_state
        for group, kept in zip(optimizer.param_groups, kept_params, strict=True):
            group["params"] = kept
        for p in params:
            local_tensor(p).grad = None  # the DTensor keeps its gradient; this reference would outlive zero_grad


@torch.no_grad()
def clip_grad_norm_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (any mix of meshes and placements), then clip in place.

    Each gradient's square norm comes from its local tensor; summed over the mesh dimensions it is sharded on
    (``shard_dims``) and not over those it is replicated on, each counts once. Nothing here reads a value on the
    host or copies one from it (either would wait for the GPU): the norm stays on the device.
    """
    grads = [p.grad for p in params if p.grad is not None]
    total_sq = torch.zeros((), dtype=torch.float32, device=grads[0].device if grads else None)
    groups: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for g in grads:
        groups[shard_dims(g)].append(local_tensor(g))
    for (mesh, dims), tensors in groups.items():
        square = torch.stack([n.float() for n in torch._foreach_norm(tensors, 2.0)]).square().sum()
        for dim in dims:
            dist.all_reduce(square, group=mesh.get_group(dim))
        total_sq += square
    total = total_sq.sqrt()
    if max_norm > 0:
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_([local_tensor(g) for g in grads], coef)
    return total


def shard_dims(t: torch.Tensor) -> tuple[object, tuple[int, ...]]:
    """A gradient's mesh and the mesh dimensions its local tensors split it over (none for a plain tensor). A
    partial placement (unreduced sums) has no norm of its own: ``tp.sum_partial_grads`` leaves none by the step."""
    if not isinstance(t, DTensor):
        return None, ()
    if any(p.is_partial() for p in t.placements):
        raise ValueError(f"gradient with partial placements {t.placements}: sum it before the norm")
    mesh = t.device_mesh
    # sharded, FSDP's strided shards over TP's included: every placement but a replica
    return mesh, tuple(i for i, p in enumerate(t.placements) if not p.is_replicate() and mesh.size(i) > 1)
