"""Layout invariance: every parallel layout equals a plain single-process Hugging Face run.

Both sides come from ``shardwise.verify``, which ``shardwise verify`` runs too: the parallel side
trains through the trainer's own functions in torchrun workers; the reference never touches
shardwise's model code or process groups (``AutoModelForCausalLM`` with its own forward, torch's
AdamW and ``clip_grad_norm_``, the token-level mean over the whole global batch). Only the data
order, the initial weights (``init_weights`` on plain tensors) and the LR schedule are shared.
"""

from __future__ import annotations

import json
from functools import cache

import pytest
import torch
from _parity_cases import VARIANTS, case_overrides, variant_presets
from conftest import torchrun

from shardwise.config import load_config
from shardwise.verify import compare, register_presets, run_reference

PRESETS = variant_presets()
register_presets(PRESETS)  # for the references, built in this process

LAYOUTS = {
    "tp2": {"parallel.tp": 2, "parallel.sequence_parallel": False, "parallel.loss_parallel": False},
    "tp2-sp-lp": {"parallel.tp": 2, "parallel.sequence_parallel": True, "parallel.loss_parallel": True},
    "dp2xtp2-sp-lp": {"parallel.dp_shard": 2, "parallel.tp": 2},
    # Mixed 1D/2D parameters (norms stay FSDP-only without SP), with full activation checkpointing.
    "dp2xtp2-nosp-ac": {"parallel.dp_shard": 2, "parallel.tp": 2, "parallel.sequence_parallel": False,
                        "train.activation_checkpointing": "full"},
    "hsdp2xtp2-sac": {"parallel.dp_replicate": 2, "parallel.dp_shard": 1, "parallel.tp": 2,
                      "train.activation_checkpointing": "selective"},
}
WORLD = {"tp2": 2, "tp2-sp-lp": 2, "dp2xtp2-sp-lp": 4, "dp2xtp2-nosp-ac": 4, "hsdp2xtp2-sac": 4}


@cache
def reference(variant: str) -> dict:
    """Plain HF model, one process, fp32: losses, logits, first-step grads, final weights."""
    return run_reference(load_config(None, case_overrides(variant, {"parallel.tp": 1})))


@pytest.fixture(scope="module", params=list(LAYOUTS))
def layout_results(request, tmp_path_factory) -> tuple[str, dict]:
    name = request.param
    out = tmp_path_factory.mktemp(name) / "results.pt"
    cases = [case_overrides(v, LAYOUTS[name]) for v in VARIANTS]
    torchrun(WORLD[name], "shardwise.verify", "--presets", json.dumps(PRESETS), "--cases", json.dumps(cases),
             "--out", str(out))
    return name, dict(zip(VARIANTS, torch.load(out)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_layout_matches_single_process(layout_results, variant):
    """Parameter count, first-step loss (1e-5) and every gradient (1e-4), logits at init (1e-5), every
    step's loss and grad norm (1e-4) and the final weights (1e-3), all relative; see verify.TOLERANCE."""
    name, results = layout_results
    failed = [c.line() for c in compare(results[variant], reference(variant)) if not c.ok]
    assert not failed, f"{name}/{variant}:\n" + "\n".join(failed)
