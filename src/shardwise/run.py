"""``Run``: everything a training step needs, built once in every rank (mesh, parallel model, optimizer).

Its own module so that data flows one way: ``checkpoint``, ``train``, ``bench`` and ``verify``
all take a ``Run``, and none of them needs another to get one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shardwise.config import Config
from shardwise.data import Batch, pad_to_multiple, split_sequence
from shardwise.load import load_weights
from shardwise.loss import LossFn, loss_fn
from shardwise.mesh import Layout, Meshes, build_mesh, init_distributed, resolve_layout
from shardwise.model import CausalLM, build_meta_model, hf_config, init_weights
from shardwise.optim import build_optimizer, build_scheduler
from shardwise.parallelize import parallelize
from shardwise.router import RouterLoss, coefficient
from shardwise.tp import Group, partial_grad_params

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """``train.dtype=auto``: bf16 compute (fp32 master weights and reductions) on GPU, fp32 on CPU."""
    name = cfg.train.dtype
    if name == "auto":
        name = "bfloat16" if device.type == "cuda" else "float32"
    return DTYPES[name]


@dataclass
class Run:
    """Everything a step needs, built once."""

    cfg: Config
    device: torch.device
    layout: Layout
    meshes: Meshes
    model: CausalLM
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    router: RouterLoss | None = None  # the routers' load-balancing loss, where train.router_aux_loss adds one

    @property
    def loss_parallel(self) -> bool:
        return self.layout.tp > 1 and self.cfg.parallel.loss_parallel

    @functools.cached_property
    def partial_grads(self) -> list[torch.nn.Parameter]:
        """Parameters whose gradients each TP rank holds only a part of (``shardwise.tp``)."""
        return partial_grad_params(self.model)

    @functools.cached_property
    def loss_fn(self) -> LossFn:
        return loss_fn(self.cfg.train.compiles(self.device.type))

    def local_batch(self, batch: Batch) -> Batch:
        """``batch`` (whole rows, on the CPU) as this rank computes it: padded for even TP shards (under CP
        ``train.seq_len`` already cuts into equal chunks of them, see ``cp.errors``), then cut to this CP rank's
        tokens."""
        padded = pad_to_multiple(batch, self.layout.seq_multiple)
        return split_sequence(padded, self.layout.cp, self.meshes.cp.get_local_rank())

    def close(self) -> None:
        """Free what must go before the process group does: the blocks' CUDA graphs (``graphs.BlockGraphs.release``),
        without which a TP run that used them never exits."""
        if self.model.graphs is not None:
            self.model.graphs.release()

    def logits(self, batch: Batch) -> torch.Tensor:
        """The model's logits of a local batch (``local_batch``), on the device."""
        return self.model(batch.input_ids, batch.position_ids, packed=batch.packed, documents=batch.documents)


def build_run(cfg: Config) -> Run:
    """Mesh, parallelized model (loaded from ``model.path`` or initialized), optimizer; in every rank."""
    device = init_distributed(cfg.parallel.timeout_s)
    layout = resolve_layout(cfg.parallel, dist.get_world_size())
    meshes = build_mesh(layout)
    model = build_meta_model(hf_config(cfg.model), DTYPES[cfg.model.dtype], cfg.model.trust_remote_code)
    parallelize(model, cfg, meshes, layout, compute_dtype(cfg, device))
    if cfg.model.path:
        load_weights(model, cfg.model.path, device)
    else:
        init_weights(model, device, cfg.train.seed)
    optimizer = build_optimizer(model, cfg.train, device)
    return Run(cfg, device, layout, meshes, model, optimizer, build_scheduler(optimizer, cfg.train),
               router_loss(cfg, model, layout, meshes))


def router_loss(cfg: Config, model: CausalLM, layout: Layout, meshes: Meshes) -> RouterLoss | None:
    """Hooks for the routers' load-balancing loss where ``router.coefficient`` asks for one; its sums are completed
    over the ranks that share a micro-batch's tokens: TP's under sequence parallelism, and CP's."""
    coef = coefficient(cfg, model.config)
    if not coef:
        return None
    tp = Group.of(meshes.tp) if cfg.parallel.shards_tokens() else None
    return RouterLoss(model, coef, tp, Group.of(meshes.cp) if layout.cp > 1 else None)
