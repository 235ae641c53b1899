"""``shardwise.loss``: the vocabulary-parallel loss's target pick gives a gather's values and gradients, eager and
compiled (the layouts' losses against one device are ``test_parallelize``'s)."""

from __future__ import annotations

import pytest
import torch

from shardwise.loss import _TargetLogit


@pytest.mark.parametrize("compiled", [False, True])
def test_target_logit_matches_a_gather(compiled):
    """Targets on this rank's columns, on another rank's (below and above) and ignored ones (-100): the value and
    the gradient a masked gather gives, bit for bit."""
    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    local = torch.tensor([0, 4, 2, -3, 7, -100])
    grad = torch.randn(6, dtype=torch.float64)
    pick = torch.compile(_TargetLogit.apply, backend="aot_eager", fullgraph=True) if compiled else _TargetLogit.apply
    got = pick(x, local)
    (got_grad,) = torch.autograd.grad(got, x, grad)
    mine = (local >= 0) & (local < 5)
    want = torch.where(mine, x.gather(-1, local.clamp(0, 4).unsqueeze(-1)).squeeze(-1), 0.0)
    (want_grad,) = torch.autograd.grad(want, x, grad)
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)
    assert got_grad.count_nonzero() == 3  # one column per row on this rank, nothing for the others
