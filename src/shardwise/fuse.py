"""Matmuls that share an operand, computed as one: an inductor pass over each compiled block's graphs.

A decoder block projects one input three times (q, k, v) and another twice (gate, up): one matmul each, and in
backward the input's gradient is their sum, three matmuls and an elementwise add that the TP reduce-scatter (or the
norm's backward) then reads. One matmul over concatenated operands does the same arithmetic in fewer, wider kernels
(k and v alone are 128-256 columns at Qwen2-1.5B shapes, too narrow to fill a GPU), the gradient's sum happens in
the matmul's fp32 accumulator (one rounding to bf16, not three), and the reduce-scatter reads a matmul's output,
which inductor's async-TP pass can pipeline.

Three rewrites, exact up to the order of floating-point sums:

- a sum of products ``A1 @ B1 + A2 @ B2`` -> ``cat(A1, A2; 1) @ cat(B1, B2; 0)`` (an input's gradient);
- a shared left operand ``A @ B1, A @ B2`` -> ``A @ cat(B1, B2; 1)``, sliced by columns (the projections; with
  biases, ``addmm`` over the concatenated biases);
- a shared right operand ``A1 @ B, A2 @ B`` -> ``cat(A1, A2; 0) @ B``, sliced by rows (the weights' gradients,
  which read the concatenated gradients of the first rewrite).

Only projections narrower than ``FUSE_BELOW`` outputs are merged (q, k and v; not gate and up at the shapes measured):
two wide matmuls already fill the GPU, and concatenating their weights costs copies that one wider kernel does not win
back (BENCHMARKS.md, sessions 18 and 28).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

import torch
from torch import fx
from torch._guards import detect_fake_mode
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
from torch.utils._pytree import tree_map_only

aten = torch.ops.aten
MM, ADDMM, ADD = aten.mm.default, aten.addmm.default, aten.add.Tensor
VIEWS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)
FUSE_BELOW = 4096


class SiblingMatmuls(CustomGraphPass):
    """``fuse_siblings`` as inductor takes a pass (``post_grad_custom_pre_pass``); ``uuid`` keys its cache."""

    def __call__(self, graph: fx.Graph) -> None:
        fuse_siblings(graph)

    def uuid(self) -> bytes:
        return get_hash_for_files((__file__,))


def fuse_siblings(graph: fx.Graph, below: int = FUSE_BELOW) -> int:
    """Apply the three rewrites (sums first, whose concatenated gradients the weight gradients then reuse) to a
    functional aten graph; return how many matmuls were merged away. A graph with symbolic shapes (a recompile for
    another batch shape, e.g. evaluation's) is left as it is: comparing its sizes would add guards after tracing."""
    if any(n.target in (MM, ADDMM) and not all(isinstance(d, int) for d in _val(n).shape)
           for n in graph.nodes if _val(n) is not None):
        return 0
    rewriter = _Rewriter(graph, below)
    merged = rewriter.sums() + rewriter.shared(0) + rewriter.shared(1)
    if merged:
        _stable_sort(graph)
    return merged


def _val(node: Any) -> torch.Tensor | None:
    return node.meta.get("val") if isinstance(node, fx.Node) else None


def _is_transpose(node: fx.Node) -> bool:
    return node.target is aten.t.default or (node.target is aten.permute.default and list(node.args[1]) == [1, 0])


class _Rewriter:
    def __init__(self, graph: fx.Graph, below: int) -> None:
        self.graph, self.below = graph, below
        self.position = {node: i for i, node in enumerate(graph.nodes)}
        self.cats: dict[tuple[tuple[fx.Node, ...], int], fx.Node] = {}
        self.fake = detect_fake_mode([v for n in graph.nodes if isinstance(v := _val(n), torch.Tensor)])

    def call(self, target: Any, *args: Any) -> fx.Node:
        """A new node, with the ``meta["val"]`` inductor's later passes read where the graph has fake values."""
        node = self.graph.call_function(target, args)
        if self.fake is not None:
            with self.fake:
                node.meta["val"] = target(*tree_map_only(fx.Node, _val, args))
        return node

    def cat(self, nodes: list[fx.Node], dim: int) -> fx.Node:
        """``cat(nodes; dim)``, built once per list. Transposed 2-d operands (weights as a linear reads them) are
        concatenated untransposed along the other dim and transposed back: a contiguous copy of the originals,
        which the matmul reads as it read them."""
        if all(_is_transpose(n) for n in nodes):
            return self.call(aten.permute.default, self.cat([n.args[0] for n in nodes], 1 - dim), [1, 0])
        key = (tuple(nodes), dim)
        if key not in self.cats:
            flat = self._flat_cat(nodes) if dim == 1 else None
            self.cats[key] = flat if flat is not None else self.call(aten.cat.default, list(nodes), dim)
        return self.cats[key]

    def _unflattened(self, fused: fx.Node, shared: fx.Node) -> fx.Node:
        """A merged matmul's output, given back the leading dims its input was flattened from: inductor's async-TP
        pass follows an n-d all-gather only into ``reshape -> mm -> reshape``."""
        base = shared.args[0] if shared.target in VIEWS else None
        if _val(base) is None or _val(base).ndim < 3 or _val(base).shape[-1] != _val(shared).shape[-1]:
            return fused
        return self.call(aten.reshape.default, fused, [*_val(base).shape[:-1], _val(fused).shape[-1]])

    def _flat_cat(self, nodes: list[fx.Node]) -> fx.Node | None:
        """Columns of flattened n-d tensors (gradients, as linear layers flatten them): concatenated before the
        flatten, so a matmul reads ``reshape -> mm -> reshape`` of them, the form in which inductor's async-TP pass
        pipelines an n-d reduce-scatter with the matmul that produces it."""
        bases = [n.args[0] if n.target in VIEWS else None for n in nodes]
        if not all(isinstance(b, fx.Node) and _val(b) is not None and _val(b).ndim > 2 for b in bases):
            return None
        if len({tuple(_val(b).shape[:-1]) for b in bases}) > 1 or any(
                tuple(_val(n).shape) != (math.prod(_val(b).shape[:-1]), _val(b).shape[-1])
                for n, b in zip(nodes, bases)):
            return None
        whole = self.call(aten.cat.default, bases, -1)
        return self.call(aten.reshape.default, whole, [_val(nodes[0]).shape[0], _val(whole).shape[-1]])

    def order(self, node: fx.Node) -> float:
        """Where ``node`` (or, for a transpose, what it transposes) stood: members of a group are concatenated in
        this order, so the second and third rewrites concatenate the same gradients alike."""
        base = node.args[0] if _is_transpose(node) else node
        return self.position.get(base, math.inf)

    def _first(self, nodes: list[fx.Node]) -> fx.Node:
        """The one of ``nodes`` that stands first in the graph now (an earlier rewrite may have made it)."""
        members = set(nodes)
        return next(n for n in self.graph.nodes if n in members)

    def sums(self) -> int:
        """Rewrite every sum from its root, roots found first: a rewrite erases its sum's inner adds, which would
        otherwise be met later as roots of nothing."""
        roots = [n for n in self.graph.nodes if n.target is ADD and not _inner_add(n)]
        return sum(self._sum(root) for root in roots)

    def _sum(self, root: fx.Node) -> int:
        terms = _terms(root)
        groups: dict[tuple, list[fx.Node]] = defaultdict(list)
        for term in terms:
            mm = _product(term)
            if mm is not None and _val(term) is not None and _val(term).shape == _val(root).shape and \
                     _val(mm.args[0]).shape[1] < self.below:
                groups[(tuple(_val(mm).shape), _val(mm).dtype, term.target, tuple(_val(term).shape))].append(term)
        group = next((g for g in groups.values() if len(g) > 1), [])
        if not group:
            return 0
        mms = sorted((_product(t) for t in group), key=lambda m: self.order(m.args[0]))
        with self.graph.inserting_before(root):
            total = self.call(MM, self.cat([m.args[0] for m in mms], 1), self.cat([m.args[1] for m in mms], 0))
            if group[0].target in VIEWS:  # the products were viewed (n-d) before they were summed
                total = self.call(group[0].target, total, group[0].args[1])
            for term in terms:
                if term not in group:
                    total = self.call(ADD, total, term)
        root.replace_all_uses_with(total)
        _erase_dead(self.graph, [root])
        return len(mms) - 1

    def shared(self, side: int) -> int:
        """Merge matmuls whose operand ``side`` (0: left, 1: right) is one node; their outputs become slices."""
        groups: dict[tuple, list[fx.Node]] = defaultdict(list)
        for node in self.graph.nodes:
            if node.target is MM and _val(node) is not None:
                groups[(_same(node.args[side]), MM)].append(node)
            elif node.target is ADDMM and side == 0 and not node.kwargs and _val(node.args[0]) is not None \
                    and _val(node.args[0]).ndim == 1:
                groups[(_same(node.args[1]), ADDMM)].append(node)
        return sum(self._shared(mms, side) for mms in groups.values() if len(mms) > 1)

    def _shared(self, mms: list[fx.Node], side: int) -> int:
        dim = 1 - side  # the concatenated (and sliced) dim: columns of right operands, rows of left ones
        biased = mms[0].target is ADDMM
        other = 1 + biased - side  # where each matmul's own operand is (an addmm's bias comes first)
        mms = [m for m in mms if _val(m.args[other]).shape[dim] < self.below]
        if len(mms) < 2 or len({_val(m.args[other]).dtype for m in mms}) > 1:
            return 0
        mms.sort(key=lambda m: self.order(m.args[other]))
        shared = mms[0].args[biased + side]
        with self.graph.inserting_before(self._first(mms)):
            cat = self.cat([m.args[other] for m in mms], dim)
            if biased:
                fused = self.call(ADDMM, self.cat([m.args[0] for m in mms], 0), shared, cat)
            else:
                fused = self.call(MM, *((shared, cat) if side == 0 else (cat, shared)))
            whole = self._unflattened(fused, shared) if dim == 1 else fused
            start = 0
            for m in mms:
                width = _val(m).shape[dim]
                part = self.call(aten.slice.Tensor, whole, -1 if dim == 1 else 0, start, start + width)
                if dim == 1:  # a column slice would keep the whole output alive where backward saves it (v, for
                    # attention); a copy of its own does not, and inductor folds it into the slice's elementwise readers
                    part = self.call(aten.reshape.default, self.call(aten.clone.default, part), list(_val(m).shape))
                m.replace_all_uses_with(part)
                start += width
        _erase_dead(self.graph, mms)
        return len(mms) - 1


def _same(node: fx.Node) -> Any:
    """What ``node`` holds: views of one tensor to one shape are one operand (each linear layer flattens its input)."""
    return (node.args[0], tuple(node.args[1])) if node.target in VIEWS else node


def _plain_add(node: Any) -> bool:
    return isinstance(node, fx.Node) and node.target is ADD and not node.kwargs \
        and all(isinstance(a, fx.Node) for a in node.args)


def _inner_add(node: fx.Node) -> bool:
    """An add whose only reader is another plain add: part of a larger sum, handled from its root."""
    return len(node.users) == 1 and _plain_add(next(iter(node.users)))


def _terms(node: fx.Node) -> list[Any]:
    """The terms of a tree of plain adds, each inner add read by its parent alone."""
    if not _plain_add(node):
        return [node]
    return [t for a in node.args for t in (_terms(a) if _plain_add(a) and len(a.users) == 1 else [a])]


def _product(term: Any) -> fx.Node | None:
    """The 2-d matmul that ``term`` is, or is a view of, read by nothing else."""
    node = term.args[0] if isinstance(term, fx.Node) and term.target in VIEWS and len(term.users) == 1 else term
    ok = isinstance(node, fx.Node) and node.target is MM and len(node.users) == 1
    return node if ok and all(_val(a) is not None and _val(a).ndim == 2 for a in node.args) else None


def _erase_dead(graph: fx.Graph, nodes: list[fx.Node]) -> None:
    """Erase ``nodes`` and what only they read, once nothing reads them (never a graph input or an impure op)."""
    pending, erased = list(nodes), set()
    while pending:
        node = pending.pop()
        if node not in erased and not node.users and node.op == "call_function" and not node.is_impure():
            pending += node.all_input_nodes
            graph.erase_node(node)
            erased.add(node)


def _stable_sort(graph: fx.Graph) -> None:
    """Reorder ``graph`` so every node follows its inputs, moving as little as possible: a merged matmul stands where
    its first member stood, and what its later members read moves up to it."""
    placed: set[fx.Node] = set()
    order: list[fx.Node] = []
    for root in graph.nodes:
        stack = [root]
        while stack:
            node = stack[-1]
            waiting = [i for i in node.all_input_nodes if i not in placed]
            if waiting:
                stack += reversed(waiting)
                continue
            stack.pop()
            if node not in placed:
                placed.add(node)
                order.append(node)
    for before, node in itertools.pairwise(order):
        before.append(node)
