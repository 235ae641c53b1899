"""Tensor parallelism on local tensors: Megatron's layers, with DTensor only at rest.

A tensor-parallel module keeps its parameters as DTensors on the TP mesh, so FSDP2 shards them
further, DCP checkpoints them, gradient clipping reduces over them and ``shardwise plan`` prints
them, all by their global shapes. Compute never sees a DTensor: the module reads each parameter
as its local shard (``to_local``, through a property on a per-class subclass, so HF's own
``forward`` runs unchanged) and does plain torch ops. The only cross-rank traffic is Megatron's:
per attention and per MLP, one all-gather in and one reduce-scatter out with sequence
parallelism (one all-reduce each way without), issued as functional collectives that
``torch.compile`` keeps inside a block's graph and async TP can overlap with the matmuls.
DTensor's per-op dispatch, by contrast, left an eager TP step waiting on the CPU for most of its
time on 2xH100 (BENCHMARKS.md).

Sequence parallelism shards the residual stream by *token*: the ``batch x seq`` tokens of a
micro-batch in row-major order, cut into ``tp`` contiguous pieces and held as
``(1, tokens/tp, hidden)``. Norms, residual adds and MLPs work per token, so every gather and
scatter runs along dim 0 without a copy; only attention needs ``(batch, seq)`` back, and its
gather restores that shape from the block's ``position_ids``.

A column-parallel weight whose rows a rank must compute with are not its own contiguous block
(the pieces of a fused q/k/v or gate/up projection, or a KV head held by several ranks) is
still stored as a plain ``Shard(0)`` of Hugging Face's layout; its forward regroups the rows
with one all-to-all (``RowPlan``), whose backward sends the gradient rows back and sums them.

Each style's ``apply(module, mesh)`` shards one module in place; ``shardwise.plans`` says which
style each submodule of an architecture gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.compiler import is_compiling
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Placement, Replicate, Shard, distribute_tensor
from torch.optim.optimizer import register_optimizer_step_post_hook

from shardwise.mesh import TP_DIM

_ops = torch.ops._c10d_functional


class Group(NamedTuple):
    """The TP process group as functional collectives address it, and this rank's place in it
    (a tuple of constants, which torch.compile passes through its graphs as such)."""

    name: str
    size: int
    rank: int

    @classmethod
    def of(cls, mesh: DeviceMesh) -> Group:
        return cls(mesh.get_group().group_name, mesh.size(), mesh.get_local_rank())


# --- collectives along dim 0, each with its Megatron backward -------------------------------------

def _all_gather(x: torch.Tensor, g: Group) -> torch.Tensor:
    return _ops.wait_tensor(_ops.all_gather_into_tensor(x.contiguous(), g.size, g.name))


def _reduce_scatter(x: torch.Tensor, g: Group) -> torch.Tensor:
    return _ops.wait_tensor(_ops.reduce_scatter_tensor(x.contiguous(), "sum", g.size, g.name))


def _all_reduce(x: torch.Tensor, g: Group, op: str = "sum") -> torch.Tensor:
    return _ops.wait_tensor(_ops.all_reduce(x.contiguous(), op, g.name))


def _all_to_all(x: torch.Tensor, out_sizes: tuple[int, ...], in_sizes: tuple[int, ...], g: Group) -> torch.Tensor:
    return _ops.wait_tensor(_ops.all_to_all_single(x.contiguous(), list(out_sizes), list(in_sizes), g.name))


class _GatherTokens(torch.autograd.Function):
    """All-gather forward, reduce-scatter backward: a sequence-parallel input entering attention or MLP."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, g: Group) -> torch.Tensor:
        ctx.g = g
        return _all_gather(x, g)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _reduce_scatter(grad, ctx.g), None


class _ScatterTokens(torch.autograd.Function):
    """Reduce-scatter forward, all-gather backward: partial sums leaving a row-parallel layer."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, g: Group) -> torch.Tensor:
        ctx.g = g
        return _reduce_scatter(x, g)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _all_gather(grad, ctx.g), None


class _CopyToGroup(torch.autograd.Function):
    """Identity forward, all-reduce backward (Megatron's f): a replicated input entering column-parallel layers."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, g: Group) -> torch.Tensor:
        ctx.g = g
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _all_reduce(grad, ctx.g), None


class _ReduceFromGroup(torch.autograd.Function):
    """All-reduce forward, identity backward (Megatron's g): partial sums that every rank then uses whole."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, g: Group) -> torch.Tensor:
        return _all_reduce(x, g)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class _SumOverGroup(torch.autograd.Function):
    """All-reduce forward and backward: a sum over ranks that every rank then uses for its own part of the
    work (e.g. its heads), so the gradient of the sum is the sum of every rank's gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, g: Group) -> torch.Tensor:
        ctx.g = g
        return _all_reduce(x, g)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _all_reduce(grad, ctx.g), None


class _GatherLastDim(torch.autograd.Function):
    """All-gather of the last dim forward (vocab-sharded logits made whole), this rank's slice backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, g: Group) -> torch.Tensor:
        ctx.g = g
        stacked = _all_gather(x, g).view(g.size, *x.shape)
        return stacked.movedim(0, -2).reshape(*x.shape[:-1], g.size * x.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.chunk(ctx.g.size, dim=-1)[ctx.g.rank].contiguous(), None


def gather_tokens(x: torch.Tensor, g: Group) -> torch.Tensor:
    """``(..., tokens/tp, hidden)`` of this rank -> ``(tokens, hidden)`` of the whole micro-batch, the all-gather's
    own output: inductor's async-TP pass pipelines an all-gather only into matmuls that read it as it is."""
    return _GatherTokens.apply(x.reshape(-1, x.shape[-1]), g)


def gather_dim0(x: torch.Tensor, g: Group) -> torch.Tensor:
    """Every rank's ``x`` stacked along dim 0, in rank order; the backward reduce-scatters the gradient, so each
    rank gets the sum of every rank's gradient of its own part (context parallelism's K/V, attention's whole
    sequences)."""
    return _GatherTokens.apply(x, g)


def scatter_tokens(x: torch.Tensor, g: Group) -> torch.Tensor:
    """Partial sums ``(..., hidden)`` of every token -> this rank's ``(1, tokens/tp, hidden)``, summed over ranks."""
    return _ScatterTokens.apply(x.reshape(-1, x.shape[-1]), g).unsqueeze(0)


def reduce_from_group(x: torch.Tensor, g: Group) -> torch.Tensor:
    return _ReduceFromGroup.apply(x, g)


def all_reduce_no_grad(x: torch.Tensor, g: Group, op: str) -> torch.Tensor:
    """An all-reduce outside autograd (e.g. the max that stabilizes a softmax)."""
    return _all_reduce(x.detach(), g, op)


# --- rows of fused or replicated heads: one all-to-all from the stored block to the computed one --------

Ranges = tuple[tuple[int, int], ...]


def head_rows(heads: tuple[int, ...], rows_per_head: int, tp: int, rank: int) -> Ranges:
    """The rows of a column-parallel weight that ``rank`` computes with, ascending.

    The weight's rows are consecutive sections of ``heads[i]`` heads of ``rows_per_head`` rows each
    (one section for q_proj; q, k and v for a fused qkv_proj; gate and up with one row per "head").
    A rank takes ``n / tp`` whole heads of each section of ``n`` heads; where ``tp`` exceeds ``n``
    (and is a multiple of it), ``tp / n`` consecutive ranks share one head, as in Megatron's
    KV-head replication.
    """
    out, base = [], 0
    for n in heads:
        first, count = (rank * n // tp, n // tp) if n % tp == 0 else (rank // (tp // n), 1)
        out.append((base + first * rows_per_head, base + (first + count) * rows_per_head))
        base += n * rows_per_head
    return tuple(out)


def _overlaps(ranges: Ranges, lo: int, hi: int) -> Ranges:
    return tuple((max(a, lo), min(b, hi)) for a, b in ranges if max(a, lo) < min(b, hi))


def _merged(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


class RowPlan(NamedTuple):
    """A static all-to-all from each rank's stored block of rows (``Shard(0)``) to the rows it computes with.

    ``send`` lists ranges of the local block, concatenated in target-rank order, ``send_sizes`` how
    many rows go to each rank and ``recv_sizes`` how many come from each. Every rank needs rows in
    ascending order and blocks are ascending, so what arrives, source by source, is already in order.
    Constants only (tuples of ints), so a compiled block's graph holds it as such.
    """

    send: Ranges
    send_sizes: tuple[int, ...]
    recv_sizes: tuple[int, ...]

    @classmethod
    def of(cls, heads: tuple[int, ...], rows_per_head: int, tp: int, rank: int) -> RowPlan | None:
        """The plan of ``rank``, or None where every rank computes with exactly the block it stores."""
        total = sum(heads) * rows_per_head
        block = total // tp
        needs = [head_rows(heads, rows_per_head, tp, r) for r in range(tp)]
        if all(_merged(needs[r]) == ((r * block, (r + 1) * block),) for r in range(tp)):
            return None
        lo = rank * block
        send, send_sizes = [], []
        for need in needs:
            mine = _overlaps(need, lo, lo + block)
            send += [(a - lo, b - lo) for a, b in mine]
            send_sizes.append(sum(b - a for a, b in mine))
        recv_sizes = tuple(sum(b - a for a, b in _overlaps(needs[rank], s * block, (s + 1) * block)) for s in range(tp))
        return cls(tuple(send), tuple(send_sizes), recv_sizes)


class _Regroup(torch.autograd.Function):
    """Stored rows -> computed rows (``RowPlan``) forward; backward sends each gradient row back to the
    rank storing it, which sums the rows it lent to several ranks (a replicated head's replicas)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, plan: RowPlan, g: Group) -> torch.Tensor:
        ctx.plan, ctx.g, ctx.shape = plan, g, x.shape
        return _all_to_all(torch.cat([x[a:b] for a, b in plan.send]), plan.recv_sizes, plan.send_sizes, g)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        plan = ctx.plan
        back = _all_to_all(grad, plan.send_sizes, plan.recv_sizes, ctx.g)
        out = grad.new_zeros(ctx.shape)
        offset = 0
        for a, b in plan.send:
            out[a:b] += back[offset:offset + b - a]
            offset += b - a
        return out, None, None


def regroup(x: torch.Tensor | None, plan: RowPlan | None, g: Group) -> torch.Tensor | None:
    """This rank's stored rows of ``x`` (a weight or bias) -> the rows it computes with."""
    return x if x is None or plan is None else _Regroup.apply(x, plan, g)


# --- parameters: DTensors at rest, local shards in compute ----------------------------------------

def _local_param(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module.<name>`` as compute reads it: a parameter on the TP mesh alone becomes this rank's local
    shard, and, where no FSDP casts parameters, the result is cast to the compute dtype.

    Compute sees a parameter on the TP mesh alone once FSDP has gathered it for the forward, or
    where no FSDP wraps the model (one data-parallel rank, or ``shardwise plan``); its gradient goes
    back as a DTensor of the same placements (in the master dtype, through the cast). Between
    forwards FSDP holds the sharded parameter on the (dp, tp) mesh, and its own bookkeeping, which
    reads attributes, gets it whole. Without FSDP (``compute_in``), eager reads take a cached compute
    copy instead (``_compute_copy``); compiled blocks trace this path, a cache's side effects have no
    place in their graphs.
    """
    param = module._parameters[name]
    dtype = module._tp_compute_dtype
    if dtype is not None and param is not None and not is_compiling():
        if _Capture.active:  # a CUDA graph reads the weights as they are at each replay: cast them in it
            return _grad_leaf(module, name, param).to(dtype)  # ``to`` returns the leaf itself in its own dtype
        if isinstance(param, DTensor):
            return _compute_copy(module, name, param, dtype)
    if isinstance(param, DTensor) and param.device_mesh.mesh_dim_names == (TP_DIM,):
        param = param.to_local()
    return param if dtype is None or param is None or param.dtype == dtype else param.to(dtype)


class _OptimizerSteps:
    """How many steps any torch optimizer has taken in this process. Foreach and fused AdamW update DTensor
    parameters without bumping a version counter (torch 2.13: neither the DTensor's nor its local tensor's,
    unlike the single-tensor AdamW and ``copy_``), so a compute copy made before a step must not outlive it."""

    count = 0

    @classmethod
    def tick(cls, *_: Any) -> None:
        cls.count += 1


register_optimizer_step_post_hook(_OptimizerSteps.tick)


class _Capture:
    """Whether CUDA graphs are being captured (``capturing``): their reads cast the parameter itself, as compiled
    blocks' do, since a cached copy would be read at the address it had when the graph was captured."""

    active = False


@contextmanager
def capturing() -> Iterator[None]:
    _Capture.active = True
    try:
        yield
    finally:
        _Capture.active = False


def renew_grad_leaves(module: nn.Module) -> list[torch.Tensor]:
    """New ``_grad_leaf``s of ``module``'s trainable parameters (read through ``compute_in``: no FSDP), which a
    capture reads (``capturing``), one per parameter.

    Autograd runs each leaf's gradient accumulation on the stream that was current when it made the
    accumulator, and keeps it while any graph of the leaf lives: a capture must not find one made on the
    training stream (the capture fails), and replays must not pass the leaves that the captured graphs hold,
    whose accumulators were made on the capture's warmup stream (every replay would sync with it). So
    ``shardwise.graphs`` captures with new leaves and replays with newer ones.
    """
    leaves: dict[int, torch.Tensor] = {}
    for sub in module.modules():
        for name, param in sub._parameters.items():
            if param is not None and param.requires_grad and getattr(sub, "_tp_compute_dtype", None) is not None:
                vars(param).pop("_tp_leaf", None)
                leaf = _grad_leaf(sub, name, param)
                leaves.setdefault(id(leaf), leaf)
    return list(leaves.values())


class _ComputeCopy(NamedTuple):
    """What compute reads of one (module, parameter name) without FSDP, and what it was made from."""

    tensor: torch.Tensor
    leaf: torch.Tensor  # ``_grad_leaf``'s, which changes with the shard and with ``requires_grad``
    stamp: tuple[int, int, int]


def _stamp(param: DTensor) -> tuple[int, int, int]:
    """What moves whenever ``param``'s values may have changed: optimizer steps, in-place ops on the DTensor
    (``copy_``, ``load_state_dict``) and on its local shard (``init_weights``, loads). Writes through
    ``.data`` go unseen, as autograd does not see them either."""
    return _OptimizerSteps.count, param._version, param._local_tensor._version


def _compute_copy(module: nn.Module, name: str, param: DTensor, dtype: torch.dtype) -> torch.Tensor:
    """``param``'s local shard in ``dtype``, made once and read until the parameter changes (``_stamp``).

    Per read, ``to_local`` and the cast each cost a Python autograd Function or subclass dispatch,
    forward and backward, and the gradient a DTensor accumulation: a fifth of an eager tp=2 step's
    host time (Qwen2-1.5B on 2xH200, where the host, not the GPU, sets the pace). The cached copy is
    one cast of ``_grad_leaf(module, name, param)`` per step; its gradients reach that leaf through the
    cast's backward (which saves no tensor, so every micro-batch's backward can pass through it again). A
    recomputing checkpoint reads the same copy again, as it must: it only replaces saved tensors.
    Autograd sums the gradients of several reads of one copy in ``dtype``, as it would of one
    read's uses; disjoint reads (an expert's slice each) sum exactly, as today's separate casts did.
    One copy per (module, name) stays alive between steps: ``estimate.memory``'s ``compute_copies``.
    """
    copy, leaf, stamp = module._tp_copies.get(name), _grad_leaf(module, name, param), _stamp(param)
    if copy is None or copy.leaf is not leaf or copy.stamp != stamp:
        with torch.enable_grad():  # a copy made in evaluation serves training too
            tensor = leaf.to(dtype)  # the leaf itself in its own dtype
        copy = module._tp_copies[name] = _ComputeCopy(tensor, leaf, stamp)
    return copy.tensor


def _grad_leaf(module: nn.Module, name: str, param: torch.Tensor) -> torch.Tensor:
    """The autograd leaf of every compute copy of ``param``: its local shard, aliased (no copy; like
    ``to_local``, which compute read before), with a hook that moves each backward's gradient into ``param.grad``.

    One leaf per parameter, not per copy: the embedding and a tied ``lm_head`` hold one parameter
    through two modules, and their two upcast gradients must be summed (in the master dtype, by
    autograd, as they were at the DTensor) before they are added to ``param.grad``, or the sum of a
    second micro-batch would round differently. The parameter holds its leaf (with the shard it
    aliases, to tell a replaced shard); nothing holds a weak reference to either, which would stop
    ``Module.to_empty`` and ``_apply`` from swapping a DTensor parameter for its new tensor (and the
    swap, exchanging the two tensors' attributes, leaves a stale leaf behind). A plain parameter's leaf (CUDA
    graphs' reads, ``capturing``) aliases the parameter itself.
    """
    local = param._local_tensor if isinstance(param, DTensor) else None
    held = getattr(param, "_tp_leaf", None)
    if held is None or held[0] is not local or held[1].requires_grad != param.requires_grad:
        leaf = (param if local is None else local).detach().requires_grad_(param.requires_grad)
        if leaf.requires_grad:
            leaf.register_post_accumulate_grad_hook(partial(_move_grad, module, name))
        param._tp_leaf = held = (local, leaf)
    return held[1]


@torch.no_grad()
def _move_grad(module: nn.Module, name: str, leaf: torch.Tensor) -> None:
    """Add one backward's gradient of a parameter's leaf to the gradient of ``module``'s parameter ``name`` (for a
    DTensor a DTensor with the parameter's placements, made on the first micro-batch), as autograd's accumulation
    into the parameter itself would."""
    grad, leaf.grad, param = leaf.grad, None, module._parameters[name]
    if param.grad is None:
        param.grad = grad if not isinstance(param, DTensor) else DTensor.from_local(
            grad, param.device_mesh, param.placements, run_check=False, shape=param.shape, stride=param.stride())
    else:
        local_tensor(param.grad).add_(grad)


@cache
def _local_class(cls: type, names: tuple[str, ...], forward: Callable | None) -> type:
    """``cls`` with each of ``names`` read through ``_local_param``, and optionally another ``forward``.

    One class per (HF class, parameters, forward): every block's modules share it, so a compiled
    block is one graph for all blocks, not one per block. The original ``forward`` stays
    reachable as ``_tp_base_forward``.
    """
    body: dict[str, Any] = {n: property(lambda self, n=n: _local_param(self, n)) for n in names}
    body |= {"_tp_base_forward": cls.forward, "_tp_compute_dtype": None}
    if forward is not None:
        body["forward"] = forward
    return type(f"TP{cls.__name__}", (cls,), body)


def _swap_class(module: nn.Module, forward: Callable | None = None) -> None:
    """Give ``module`` (once) the class that reads all its own parameters through ``_local_param``."""
    cls = type(module)
    if "_tp_base_forward" in vars(cls):  # already swapped: keep its forward, unless a style gives another
        cls, forward = cls.__mro__[1], forward or (cls.forward if "forward" in vars(cls) else None)
    names = tuple(n for n, _ in module.named_parameters(recurse=False))
    module.__class__ = _local_class(cls, names, forward)


def distribute_params(module: nn.Module, device_mesh: DeviceMesh, placements: dict[str, Placement],
                      partial: tuple[str, ...] = (), forward: Callable | None = None, **attrs: Any) -> None:
    """Make ``module``'s own parameters DTensors with ``placements`` (default ``Replicate``) and have its
    compute read local shards.

    Parameters named in ``partial`` are replicated but their module sees only this rank's tokens or
    heads, so each rank's gradient is a partial sum. They still pass their gradient on as replicated
    (to FSDP, which would otherwise all-reduce a ``Partial`` gradient one parameter at a time, every
    micro-batch) and ``sum_partial_grads`` adds them over TP ranks, all at once, once per step.
    ``attrs`` become ``_tp_<name>`` attributes that ``forward`` reads.
    """
    for name, param in list(module.named_parameters(recurse=False)):
        if not isinstance(param, DTensor):
            dtensor = distribute_tensor(param.data, device_mesh, [placements.get(name, Replicate())],
                                        src_data_rank=None)
            module.register_parameter(name, nn.Parameter(dtensor, requires_grad=param.requires_grad))
    module._tp_partial_grads = tuple(n for n in partial if module._parameters.get(n) is not None)
    for key, value in attrs.items():
        setattr(module, f"_tp_{key}", value)
    _swap_class(module, forward)


def replicate_remaining(model: nn.Module, mesh: DeviceMesh) -> None:
    """Every parameter no style placed becomes a replicated DTensor on the TP mesh, so all parameters of a
    tensor-parallel model share one mesh (one optimizer group per weight-decay setting, in every layout)."""
    for module in model.modules():
        if any(not isinstance(p, DTensor) for p in module.parameters(recurse=False)):
            distribute_params(module, mesh, {}, getattr(module, "_tp_partial_grads", ()))


def compute_in(module: nn.Module, dtype: torch.dtype) -> None:
    """Have ``module``'s compute read its own parameters cast to ``dtype`` (mixed precision without FSDP), eager
    reads of DTensors through cached copies (``_compute_copy``)."""
    if any(True for _ in module.parameters(recurse=False)):
        _swap_class(module)
        module._tp_compute_dtype = dtype
        module._tp_copies = {}


def partial_grad_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters ``sum_partial_grads`` reduces, as the model holds them now (FSDP replaces them)."""
    return [m._parameters[n] for m in model.modules() for n in getattr(m, "_tp_partial_grads", ())]


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The tensor a DTensor wraps (this rank's shard or replica: the same storage, outside autograd); a plain
    tensor itself."""
    return t._local_tensor if isinstance(t, DTensor) else t


@torch.no_grad()
def sum_partial_grads(params: list[nn.Parameter], mesh: DeviceMesh) -> None:
    """Add the partial gradients of ``params`` over TP ranks in one all-reduce (of this rank's FSDP shards)."""
    grads = [local_tensor(p.grad) for p in params if p.grad is not None]
    if not grads or mesh.size() == 1:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=mesh.get_group())
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(flat.split([g.numel() for g in grads]), grads)])


# --- styles -----------------------------------------------------------------------------------------
# Each style's forward is one module-level function reading ``_tp_*`` attributes, never a closure.

def _colwise_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    g, plan = self._tp_group, self._tp_rows
    return F.linear(x, regroup(self.weight, plan, g), regroup(self.bias, plan, g))


@dataclass(frozen=True)
class ColwiseParallel:
    """Output features split over TP ranks (q/k/v, gate/up): weight and bias ``Shard(0)``, input whole.

    ``heads`` describes the output rows as consecutive sections of whole heads of ``rows_per_head``
    rows (``head_rows``): a fused projection (Phi-3's ``qkv_proj``, ``gate_up_proj``) computes with
    its share of every section, and a section of fewer heads than ranks (KV heads at ``tp >
    num_key_value_heads``) gives each head to ``tp / heads`` ranks. Where that differs from the
    stored block, the forward regroups the rows (``RowPlan``). Storage stays ``Shard(0)`` of
    Hugging Face's layout, so checkpoints, resharding, export and loading see the original shapes.
    """

    heads: tuple[int, ...] = ()
    rows_per_head: int = 1

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        g = Group.of(mesh)
        plan = RowPlan.of(self.heads, self.rows_per_head, g.size, g.rank) if self.heads else None
        if plan is None:
            distribute_params(module, mesh, {"weight": Shard(0), "bias": Shard(0)})
        else:
            distribute_params(module, mesh, {"weight": Shard(0), "bias": Shard(0)}, forward=_colwise_forward,
                              group=g, rows=plan)


def _colwise_rms_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    g, dtype = self._tp_group, x.dtype
    x = x.float()
    # every rank holds width/tp of each token (replicated heads: r copies of a 1/r share), so the sum over
    # ranks divided by tp x local width is the mean over the full width
    sum_sq = _SumOverGroup.apply(x.pow(2).sum(-1, keepdim=True), g)
    x = x * torch.rsqrt(sum_sq / (g.size * x.shape[-1]) + self._tp_eps)
    return (regroup(self.weight, self._tp_rows, g) * x).to(dtype)


@dataclass(frozen=True)
class ColwiseRMSNorm:
    """An RMSNorm over the whole output width of a column-parallel projection (OLMo 2's q/k norms, which
    span all heads): its weight is split like the projection (``heads``, ``rows_per_head``), and the
    mean of squares adds every rank's sum of squares with one all-reduce of a scalar per token, in
    the forward and (as each rank uses it for its own heads) in the backward."""

    heads: tuple[int, ...]
    rows_per_head: int

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        g = Group.of(mesh)
        distribute_params(module, mesh, {"weight": Shard(0)}, forward=_colwise_rms_forward, group=g,
                          rows=RowPlan.of(self.heads, self.rows_per_head, g.size, g.rank),
                          eps=module.variance_epsilon)


def _rowwise_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    partial = F.linear(x, self.weight)
    out = scatter_tokens(partial, self._tp_group) if self._tp_sp else reduce_from_group(partial, self._tp_group)
    return out if self.bias is None else out + self.bias


@dataclass(frozen=True)
class RowwiseParallel:
    """Input features split (o_proj, down_proj): weight ``Shard(1)``; partial outputs summed over ranks.

    With sequence parallelism the sum is a reduce-scatter onto this rank's tokens, else an
    all-reduce; the bias (replicated) is added once, after the sum.
    """

    sequence_parallel: bool

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        sp = self.sequence_parallel
        partial = ("bias",) if sp else ()  # each rank's bias gradient covers its tokens only
        distribute_params(module, mesh, {"weight": Shard(1)}, partial, _rowwise_forward, group=Group.of(mesh), sp=sp)


def _gather_input_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    if self._tp_kwarg is not None:
        kwargs[self._tp_kwarg] = _enter(self, kwargs[self._tp_kwarg], kwargs)
    else:
        args = (_enter(self, args[0], kwargs), *args[1:])
    return self._tp_base_forward(*args, **kwargs)


def _enter(self: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """The module's input made whole: attention's as ``(batch, seq, hidden)``, an MLP's as ``(tokens, hidden)``,
    each straight from the all-gather, so that the projections' matmuls read it as it is: inductor's async-TP
    pass pipelines an all-gather only into those (BENCHMARKS.md, sessions 26-27).

    Attention gets that where each rank holds whole sequences (``batch`` a multiple of ``tp``): they are
    gathered as ``(batch/tp, seq, hidden)``. Otherwise its gathered tokens are viewed to ``(batch, seq)``."""
    g = self._tp_group
    if not self._tp_sp:
        return _CopyToGroup.apply(x, g)
    if not self._tp_restore:
        return gather_tokens(x, g)
    batch, seq = _batch_shape(kwargs)
    if batch % g.size == 0:
        return gather_dim0(x.reshape(batch // g.size, seq, x.shape[-1]), g)
    return gather_tokens(x, g).view(batch, seq, x.shape[-1])


def _batch_shape(kwargs: dict[str, Any]) -> tuple[int, int]:
    """(batch, seq) of the call: every decoder block passes full-sequence positions to attention."""
    if kwargs.get("position_ids") is not None:
        return tuple(kwargs["position_ids"].shape)
    return tuple(kwargs["position_embeddings"][0].shape[:2])


@dataclass(frozen=True)
class GatherInput:
    """Before attention or an MLP: gather the sequence-parallel tokens, or mark a replicated input (f).

    ``kwarg`` names the keyword argument that carries the hidden states (HF calls attention with
    ``hidden_states=``), else the first positional one does. ``restore_batch`` gives the module the
    gathered tokens as ``(batch, seq, hidden)``, which attention needs, taking the shape from
    ``position_ids`` (or ``position_embeddings``) of the same call (``_enter``); without it the module
    gets them as ``(tokens, hidden)``, which a dense MLP (per token) takes as they are.
    """

    sequence_parallel: bool
    kwarg: str | None = None
    restore_batch: bool = False

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        distribute_params(module, mesh, {}, forward=_gather_input_forward, group=Group.of(mesh),
                          sp=self.sequence_parallel, kwarg=self.kwarg, restore=self.restore_batch)


@dataclass(frozen=True)
class AttentionParallel:
    """Attention with its heads split over TP ranks: gathers its input as ``GatherInput(sp, "hidden_states",
    restore_batch=True)`` does, and sets ``num_key_value_groups`` (query heads per KV head, which HF's
    attention uses to repeat K/V) from this rank's heads: unchanged while ``tp`` divides the KV heads,
    ``heads / tp`` once KV heads are replicated (each rank then holds one)."""

    sequence_parallel: bool

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        GatherInput(self.sequence_parallel, kwarg="hidden_states", restore_batch=True).apply(module, mesh)
        heads, kv = module.config.num_attention_heads, module.config.num_key_value_heads
        module.num_key_value_groups = heads // max(mesh.size(), kv)


def _sequence_attention_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    x = kwargs["hidden_states"]
    batch, seq = _batch_shape(kwargs)
    kwargs["hidden_states"] = x.view(batch, seq, x.shape[-1])
    out, *rest = self._tp_base_forward(*args, **kwargs)
    return out.view(1, batch * seq, out.shape[-1]), *rest


def per_sequence_refusal(tp: int, micro: int) -> str:
    """Why ``SequenceAttention`` cannot run micro-batches of ``micro`` sequences at ``tp`` (the fix is the caller's)."""
    return (f"parallel.tp_attention=sequences needs micro-batches of a multiple of parallel.tp={tp} sequences, not "
            f"{micro} (each TP rank attends over whole sequences)")


@dataclass(frozen=True)
class SequenceAttention:
    """Attention that each TP rank computes over the whole sequences it holds, with every head
    (``parallel.tp_attention=sequences``). Sequence parallelism cuts a micro-batch's tokens, row after row,
    into ``tp`` contiguous pieces, so where the micro-batch is a multiple of ``tp`` sequences each rank holds
    ``batch / tp`` whole rows: attention needs nothing from the other ranks, and its input is not gathered
    nor its output reduce-scattered. Its weights are replicated over the TP ranks (FSDP still shards them over
    data-parallel ranks) and each rank's gradient covers its own rows, so they are summed over TP ranks once
    per step (``PartialGradReplica``). ``CausalLM`` hands attention the positions, rotary tables and masks of
    this rank's rows (``CausalLM.rows``)."""

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        TokenLocalReplica(sequence_parallel=True).apply(module, mesh)  # every parameter's gradient summed over TP
        own = tuple(n for n, _ in module.named_parameters(recurse=False))
        distribute_params(module, mesh, {}, own, _sequence_attention_forward)


@dataclass(frozen=True)
class PartialGradReplica:
    """Replicated parameters whose module sees only this rank's tokens (norms under sequence
    parallelism) or heads (Qwen3's per-head q/k norms): their gradients are summed over TP ranks."""

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        distribute_params(module, mesh, {}, tuple(n for n, _ in module.named_parameters(recurse=False)))


@dataclass(frozen=True)
class TokenLocalReplica:
    """A module replicated over TP ranks that runs on each rank's own tokens: a mixture-of-experts block
    under sequence parallelism (router, experts, shared expert), which routes each token on the one
    rank holding it, with the whole router, so routing is exactly the single-process one. Every
    parameter of the module and its submodules gets ``PartialGradReplica``'s summed gradient. Without
    sequence parallelism every rank runs every token and computes the whole gradient itself, so the
    parameters are plain replicas (``replicate_remaining``); FSDP shards them either way."""

    sequence_parallel: bool

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        if self.sequence_parallel:
            for sub in list(module.modules()):
                if next(sub.parameters(recurse=False), None) is not None:
                    PartialGradReplica().apply(sub, mesh)


def _embedding_forward(self: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    local = ids - self._tp_start
    outside = (local < 0) | (local >= self._tp_rows)
    out = self._tp_base_forward(local.masked_fill(outside, 0)).masked_fill(outside.unsqueeze(-1), 0.0)
    return scatter_tokens(out, self._tp_group) if self._tp_sp else reduce_from_group(out, self._tp_group)


@dataclass(frozen=True)
class VocabParallelEmbedding:
    """Embedding rows (the vocabulary) split over ranks: each looks up the ids it holds, zeros the rest,
    and the sum over ranks (a reduce-scatter onto this rank's tokens with sequence parallelism, else an
    all-reduce) completes every row. HF subclasses' own forwards (e.g. scaled embeddings) still run."""

    sequence_parallel: bool

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        g = Group.of(mesh)
        rows = module.num_embeddings // g.size
        start, pad = g.rank * rows, module.padding_idx
        module.padding_idx = pad - start if pad is not None and start <= pad < start + rows else None
        distribute_params(module, mesh, {"weight": Shard(0)}, forward=_embedding_forward, group=g,
                          sp=self.sequence_parallel, start=start, rows=rows)


def _head_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    g = self._tp_group
    logits = self._tp_base_forward(gather_tokens(x, g).unsqueeze(0) if self._tp_sp else _CopyToGroup.apply(x, g))
    if self._tp_loss_parallel:
        return DTensor.from_local(logits, self._tp_mesh, [Shard(logits.ndim - 1)], run_check=False)
    return _GatherLastDim.apply(logits, g)


@dataclass(frozen=True)
class VocabParallelHead:
    """``lm_head`` split over the vocabulary: gather the tokens (or mark the replicated input), then each
    rank computes its slice of the logits. With loss parallelism they stay sharded, as a ``Shard(-1)``
    DTensor that ``shardwise.loss`` reduces without ever gathering; otherwise they are gathered whole."""

    sequence_parallel: bool
    loss_parallel: bool

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        distribute_params(module, mesh, {"weight": Shard(0), "bias": Shard(0)}, forward=_head_forward,
                          group=Group.of(mesh), mesh=mesh, sp=self.sequence_parallel, loss_parallel=self.loss_parallel)


Style = (ColwiseParallel | RowwiseParallel | GatherInput | AttentionParallel | SequenceAttention | ColwiseRMSNorm
         | PartialGradReplica | TokenLocalReplica | VocabParallelEmbedding | VocabParallelHead)
