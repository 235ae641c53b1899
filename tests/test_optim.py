"""``shardwise.optim``: a non-finite step skipped on the device by fused AdamW (the GPU path) changes nothing;
clipping agrees with torch's, and ``train.grad_clip=0`` leaves the gradients as they are."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import torchrun

from shardwise.optim import clip_grad_norm_


@pytest.mark.parametrize("layout", [{"parallel.tp": 2, "parallel.dp_shard": 1}, {"parallel.tp": 1, "parallel.dp_shard": 2}],
                         ids=["tp2", "dp_shard2"])
def test_fused_adamw_skips_nonfinite_steps_on_the_device(layout, tmp_path):
    """Fused AdamW reads the finite flag in its kernels (no host read): after a NaN loss and after an infinite
    gradient the weights, both moments and the step count are those of the step before, bit for bit; the next
    finite step trains."""
    out = tmp_path / "out.pt"
    overrides = {"model.preset": "tiny-qwen2", **layout, "train.seq_len": 32, "train.global_batch_size": 4,
                 "train.micro_batch_size": 2, "train.dtype": "float32", "train.compile": "false",
                 "output.progress": False}
    torchrun(2, "_optim_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    check_skips(torch.load(out))


@pytest.mark.parametrize("layout", [{"parallel.tp": 2, "parallel.dp_shard": 1}, {"parallel.tp": 1, "parallel.dp_shard": 2}],
                         ids=["tp2", "dp_shard2"])
def test_the_update_on_local_tensors_is_the_update_through_dtensors(layout, tmp_path):
    """``optim.on_local_tensors`` hands AdamW the storage the DTensors wrap (once the first step has made the
    state): after each of three clipped steps the weights and both moments are those of the same steps through
    the DTensors, bit for bit, fused and foreach; and the optimizer did see plain tensors from the second step."""
    out = tmp_path / "out.pt"
    overrides = {"model.preset": "tiny-qwen2", **layout, "train.seq_len": 32, "train.global_batch_size": 4,
                 "train.micro_batch_size": 2, "train.dtype": "float32", "train.compile": "false",
                 "output.progress": False, "compare": True}
    torchrun(2, "_optim_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    result = torch.load(out)
    for kind in ("fused", "foreach"):
        local, through = result[f"{kind}-local"], result[f"{kind}-dtensor"]
        assert local["updated"] == ["DTensor", "Tensor", "Tensor"] and through["updated"] == ["DTensor"] * 3
        for got, want in zip(local["states"], through["states"], strict=True):
            assert all(torch.equal(got["weights"][n], w) for n, w in want["weights"].items())
            assert all(torch.equal(got["optim"][n][k], v) for n, s in want["optim"].items() for k, v in s.items())
        first, last = local["states"][0]["weights"], local["states"][-1]["weights"]
        assert not all(torch.equal(last[n], w) for n, w in first.items())  # it trained


def check_skips(result: dict) -> None:
    """The worker's four states (also run on GPUs: ``benchmarks/results/*-sync-free/run.sh``)."""
    first, *skipped, last = result["states"]
    for state in skipped:
        assert state["optim"].keys() == first["optim"].keys()
        assert all(torch.equal(state["weights"][n], w) for n, w in first["weights"].items())
        assert all(torch.equal(state["optim"][n][k], v) for n, s in first["optim"].items() for k, v in s.items())
    assert all(int(s["step"]) == 1 for s in first["optim"].values())
    assert all(int(s["step"]) == 2 for s in last["optim"].values())
    assert not any(torch.equal(last["weights"][n], w) for n, w in first["weights"].items() if "norm" not in n)
    norms = result["grad_norms"]
    assert math.isfinite(norms[1]) and norms[2] == math.inf and math.isfinite(norms[3])


@pytest.mark.parametrize("max_norm", [0.0, 0.5, 1e3])
def test_clipping_agrees_with_torch_and_zero_turns_it_off(max_norm):
    """The global norm is torch's; gradients are scaled as torch scales them, and not at all at 0 (where torch
    would zero them): ``train.grad_clip=0`` means no clipping."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in ((3, 4), (5,))]
    for p in params:
        p.grad = torch.randn_like(p)
    want = [p.grad.clone() for p in params]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for r, g in zip(reference, want, strict=True):
        r.grad = g.clone()
    norm = clip_grad_norm_(params, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(reference, max_norm if max_norm > 0 else math.inf)
    torch.testing.assert_close(norm, expected)
    for p, r in zip(params, reference, strict=True):
        torch.testing.assert_close(p.grad, r.grad)
    if max_norm == 0.0:
        assert all(torch.equal(p.grad, g) for p, g in zip(params, want, strict=True))
    else:
        assert (max_norm < float(norm)) == any(not torch.equal(p.grad, g) for p, g in zip(params, want, strict=True))
