"""``shardwise.fuse``: matmuls that share an operand merged in a functional aten graph, with the same values, in the
forms inductor's async-TP pass pipelines, and handed to inductor by ``apply_compile``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch._inductor.fx_passes import micro_pipeline_tp
from torch._inductor.fx_passes.post_grad import view_to_reshape
from torch.fx.experimental.proxy_tensor import make_fx

from shardwise import fuse, parallelize

TOKENS, HIDDEN = (2, 8), 32


def _block(x, wq, wk, wv, bq, bk, bv, wg, wu, gq, gk, gv, r):
    """A block's matmuls as its graphs hold them: q/k/v and gate/up projections of one input (q/k/v with biases
    too), an input gradient summed over q/k/v (plus a residual term) and q/k/v's weight gradients, from q/k/v's
    output gradients flattened as linear layers flatten them."""
    flat = x.reshape(-1, HIDDEN)
    qkv = [F.linear(x, w) for w in (wq, wk, wv)]
    biased = [torch.addmm(b, flat, w.t()) for b, w in ((bq, wq), (bk, wk), (bv, wv))]
    gate_up = [F.linear(x, w) for w in (wg, wu)]
    gq, gk, gv = (g.reshape(-1, g.shape[-1]) for g in (gq, gk, gv))
    dx = (gq @ wq).view(x.shape) + (gk @ wk).view(x.shape) + r + (gv @ wv).view(x.shape)
    dw = [g.t() @ flat for g in (gq, gk, gv)]
    return (*qkv, *biased, *gate_up, dx, *dw)


def _inputs() -> list[torch.Tensor]:
    torch.manual_seed(0)
    shapes = [(*TOKENS, HIDDEN), (24, HIDDEN), (8, HIDDEN), (8, HIDDEN), (24,), (8,), (8,), (64, HIDDEN), (64, HIDDEN),
              (*TOKENS, 24), (*TOKENS, 8), (*TOKENS, 8), (*TOKENS, HIDDEN)]
    return [torch.randn(s, dtype=torch.float64) for s in shapes]


def _traced() -> torch.fx.GraphModule:
    gm = make_fx(_block, tracing_mode="fake")(*_inputs())
    view_to_reshape(gm)  # as inductor's graphs hold views
    return gm


def _matmuls(gm: torch.fx.GraphModule) -> int:
    return sum(n.target in (fuse.MM, fuse.ADDMM) for n in gm.graph.nodes)


@pytest.mark.parametrize("below, merged", [(48, 8), (16, 4), (0, 0)])
def test_merges_narrow_siblings_with_the_same_values(below, merged):
    """Below 48 columns every q/k/v rewrite applies (3 -> 1 in each of forward, biased forward, input gradient,
    weight gradients) while gate and up (64 wide) stay two; below 16 only k and v (8 wide) merge, q (24) stays
    apart; below 0 nothing changes. Every output equals the unmerged graph's."""
    gm, args = _traced(), _inputs()
    want = gm(*args)
    assert fuse.fuse_siblings(gm.graph, below) == merged
    gm.graph.lint()
    gm.recompile()
    assert _matmuls(gm) == 14 - merged
    for got, expected in zip(gm(*args), want, strict=True):
        torch.testing.assert_close(got, expected)


def test_a_product_read_elsewhere_stays():
    """A term of the sum that something else also reads is not merged into the sum's matmul."""
    def f(a1, b1, a2, b2):
        p1 = a1 @ b1
        return p1 + a2 @ b2, p1 * 2
    args = [torch.randn(4, 3), torch.randn(3, 5), torch.randn(4, 2), torch.randn(2, 5)]
    gm = make_fx(f, tracing_mode="fake")(*args)
    assert fuse.fuse_siblings(gm.graph) == 0


def test_sums_over_the_same_left_operands_merge_again():
    """Two sums whose products share their left operands become two matmuls over one concatenation, which the
    shared-operand rewrite then merges into one: a group of matmuls that an earlier rewrite made."""
    def f(a1, a2, b1, b2, c1, c2):
        return a1 @ b1 + a2 @ b2, a1 @ c1 + a2 @ c2
    args = [torch.randn(s, dtype=torch.float64) for s in ((4, 3), (4, 2), (3, 5), (2, 5), (3, 6), (2, 6))]
    gm = make_fx(f, tracing_mode="fake")(*args)
    want = gm(*args)
    assert fuse.fuse_siblings(gm.graph) == 3
    gm.graph.lint()
    gm.recompile()
    assert _matmuls(gm) == 1
    for got, expected in zip(gm(*args), want, strict=True):
        torch.testing.assert_close(got, expected)


def test_merged_matmuls_keep_the_forms_async_tp_pipelines():
    """A merged projection of a flattened n-d input is read as ``reshape -> mm -> reshape`` (the form in which
    inductor's async-TP pass follows an all-gather into its matmuls), and the merged input gradient is a matmul
    behind a reshape (the form in which it pipelines a reduce-scatter with its producer)."""
    gm = _traced()
    fuse.fuse_siblings(gm.graph, 48)
    x = next(n for n in gm.graph.nodes if n.op == "placeholder")
    flat = [u for u in x.users if u.target is torch.ops.aten.reshape.default]
    widths = sorted(tuple(m.B_node.meta["val"].shape) for r in flat for m in micro_pipeline_tp._find_reshape_mm_reshape(r))
    assert widths == [(HIDDEN, 40)]  # q, k and v as one; gate and up read the input as 2-d (64-wide each)
    gradient = gm.graph.find_nodes(op="output")[0].args[0][8]
    producer = micro_pipeline_tp._find_producer_matmul(gradient.args[0])  # the sum's matmul, before the residual
    assert producer is not None and tuple(producer.B_node.meta["val"].shape) == (40, HIDDEN)


def test_compiled_blocks_get_the_pass(monkeypatch):
    """``apply_compile`` hands inductor the pass for every block's graphs."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: seen.append(kwargs) or fn)
    model = SimpleNamespace(layers=[torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
    parallelize.apply_compile(model)
    assert len(seen) == 2 and all(k["fullgraph"] for k in seen)
    assert all(isinstance(k["options"]["post_grad_custom_pre_pass"], fuse.SiblingMatmuls) for k in seen)


def test_symbolic_shapes_are_left_alone():
    """A graph traced with a symbolic batch (what a recompile for another shape gets) is not rewritten."""
    def f(x, wq, wk):
        return x @ wq, x @ wk
    gm = make_fx(f, tracing_mode="symbolic")(torch.randn(4, 3), torch.randn(3, 2), torch.randn(3, 2))
    assert fuse.fuse_siblings(gm.graph) == 0
    assert _matmuls(gm) == 2
