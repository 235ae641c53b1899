"""CUDA graphs of the decoder blocks (``train.cudagraphs``): each block's forward and backward is one launch.

An eager block at a small micro-batch waits on the host: HF's Python, the TP collectives' launches
and a few hundred kernels take longer to issue than to run (eager tp=2 at micro-batch 1 kept two
H100s busy a fifth of the step, BENCHMARKS.md). ``torch.cuda.make_graphed_callables`` captures every
block's forward and backward once, in the order training runs them (forward 1..N, backward N..1,
one memory pool), and replays them: the host issues a block with one call and runs ahead.

What a replay assumes, and how shardwise keeps it true:

- Parameters stay where they are. Without FSDP (one data-parallel rank, ``errors``) a parameter's
  storage is its own for the whole run and the optimizer updates it in place; in a capture every
  read casts it afresh (``tp.capturing``), so each replay reads the current weights, not a copy
  made before an optimizer step. Gradients reach the parameters through leaves that alias them
  (``tp.renew_grad_leaves``: new ones for each capture and for the replays, so that autograd
  accumulates every gradient on the training stream).
- A replay's gradients are tensors of the graphs' pool, which the next replay overwrites: every
  parameter keeps a ``.grad`` between steps (``keep_grads``, zeroed, not freed), so autograd adds
  each micro-batch's gradient into it instead of keeping the pool's tensor as the ``.grad``.
- Shapes are fixed: one capture per distinct set of block inputs (a run has one, or two with packed
  and unpacked batches); evaluation, under ``no_grad``, runs the blocks eagerly.
- No randomness and no host logic inside a block: models with dropout and mixtures of experts
  (whose routing reads counts on the host) are refused before launch.
- The graphs go before the process group: NCCL cannot destroy a communicator while a graph that
  captured its collectives is alive, so with TP ``destroy_process_group`` waited forever after the
  run had finished (pytorch/pytorch#115388; ``BlockGraphs.release``, which ``Run.close`` calls).
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten
from transformers import PretrainedConfig

from shardwise.mesh import Layout
from shardwise.plans.decoder import num_experts
from shardwise.tp import capturing, renew_grad_leaves

Block = Callable[[nn.Module, torch.Tensor, dict[str, Any]], torch.Tensor]
Calls = list[tuple[nn.Module, dict[str, Any]]]

make_graphed_callables = torch.cuda.make_graphed_callables  # the tests put a CPU stand-in here


def errors(config: PretrainedConfig, layout: Layout) -> list[str]:
    """Why ``train.cudagraphs=true`` cannot run this model in this layout, one line each."""
    fix = "set train.cudagraphs=false"
    out = []
    if layout.dp_cp > 1:
        out.append(f"train.cudagraphs=true needs one data-parallel rank, not dp_shard x cp = {layout.dp_cp} (FSDP "
                   f"gathers parameters into new memory every step); raise parallel.tp or {fix}")
    dropout = {k: v for k, v in config.to_dict().items() if k.endswith(("dropout", "pdrop", "dropout_prob")) and v}
    if dropout:
        out.append(f"train.cudagraphs=true replays blocks without their random state, but the model has dropout "
                   f"({', '.join(f'{k}={v}' for k, v in dropout.items())}); {fix}")
    if num_experts(config):
        out.append(f"train.cudagraphs=true cannot capture mixture-of-experts blocks (their routing syncs with the "
                   f"host); {fix}")
    return out


def keep_grads(model: nn.Module) -> None:
    """Give every trainable parameter a zero ``.grad`` it does not have yet (see the module docstring).

    A parameter no micro-batch reaches would then get an AdamW step on a zero gradient (weight decay)
    where eager skips it; every parameter of the blocks that graphs accept is used."""
    for param in model.parameters():
        if param.requires_grad and param.grad is None:
            param.grad = torch.zeros_like(param)


class _Captured:
    """The graphs of every block for one set of input shapes: per block, its graphed callable, and the buffers that
    every block reads its non-hidden inputs from (positions, masks, rotary tables)."""

    def __init__(self, hidden: torch.Tensor, calls: Calls, block: Block, inputs: _Inputs):
        self.buffers = [t.detach().clone() for t in inputs.tensors]
        fns, samples = [], []
        for (layer, _), row, spec in zip(calls, inputs.rows, inputs.specs, strict=True):
            fns.append(_Graphable(block, layer, spec, row))
            leaves = renew_grad_leaves(layer)
            samples.append((hidden.detach().clone().requires_grad_(hidden.requires_grad), *self.buffers, *leaves))
        with capturing(), warnings.catch_warnings():
            # The capture's backward meets accumulators that its warmup made on a side stream (the replays pass
            # other leaves: ``renew_grad_leaves``); autograd warns once, and syncs the streams as it must.
            warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
            self.graphed = make_graphed_callables(tuple(fns), tuple(samples))

    def __call__(self, hidden: torch.Tensor, inputs: _Inputs, leaves: list[list[torch.Tensor]]) -> torch.Tensor:
        """Replay every block; ``leaves`` have the storage of the captured ones (no copy), not their identity."""
        for buffer, tensor in zip(self.buffers, inputs.tensors, strict=True):
            if buffer.data_ptr() != tensor.data_ptr():
                buffer.copy_(tensor)
        for graphed, block_leaves in zip(self.graphed, leaves, strict=True):
            hidden = graphed(hidden, *self.buffers, *block_leaves)
        return hidden


class _Graphable:
    """One block as ``make_graphed_callables`` calls it: ``(hidden, *buffers, *leaves)``, its keyword arguments
    rebuilt from the shared input buffers. The leaves (the block's own parameters, which it reads itself) are
    arguments so that the graph's backward returns their gradients."""

    def __init__(self, block: Block, layer: nn.Module, spec: TreeSpec, row: list[Any]):
        self.block, self.layer, self.spec, self.row = block, layer, spec, row

    def __call__(self, hidden: torch.Tensor, *buffers: torch.Tensor) -> torch.Tensor:
        flat = [buffers[v.index] if isinstance(v, _Slot) else v for v in self.row]
        return self.block(self.layer, hidden, tree_unflatten(flat, self.spec))


class _Slot(NamedTuple):
    index: int


class _Inputs:
    """Every block's keyword arguments, flattened: the distinct tensors among them (blocks share positions, masks
    and rotary tables) and, per block, each argument as a ``_Slot`` of those tensors or a constant."""

    def __init__(self, calls: Calls):
        slots: dict[int, _Slot] = {}
        self.tensors: list[torch.Tensor] = []
        self.rows, self.specs = [], []
        for _, kwargs in calls:
            flat, spec = tree_flatten(kwargs)
            for value in flat:
                if isinstance(value, torch.Tensor) and id(value) not in slots:
                    slots[id(value)] = _Slot(len(self.tensors))
                    self.tensors.append(value)
            self.rows.append([slots[id(v)] if isinstance(v, torch.Tensor) else v for v in flat])
            self.specs.append(spec)

    def key(self, hidden: torch.Tensor) -> tuple:
        """What one set of graphs is captured for: the shapes and dtypes of every input, which arguments share a
        tensor, and the constants."""
        return ((hidden.shape, hidden.dtype, hidden.requires_grad), tuple((t.shape, t.dtype) for t in self.tensors),
                repr(self.rows), repr(self.specs))


class BlockGraphs:
    """The decoder blocks of one model as CUDA graphs, captured on first use for each set of input shapes."""

    def __init__(self) -> None:
        self.captured: dict[tuple, _Captured] = {}
        self.leaves: list[list[torch.Tensor]] = []  # what replays pass (``tp.renew_grad_leaves``)

    def __call__(self, hidden: torch.Tensor, calls: Calls, block: Block) -> torch.Tensor:
        inputs = _Inputs(calls)
        key = inputs.key(hidden)
        if key not in self.captured:
            self.captured[key] = _Captured(hidden, calls, block, inputs)
            self.leaves = [renew_grad_leaves(layer) for layer, _ in calls]
        return self.captured[key](hidden, inputs, self.leaves)

    def release(self) -> None:
        """Free every captured graph now (a later call captures again). The graphed callables live in reference
        cycles (each is an autograd ``Function`` class), which only the cycle collector frees, and the trainer
        turns its automatic runs off (``shardwise.collect``): hence the collection here."""
        self.captured.clear()
        self.leaves = []
        gc.collect()
