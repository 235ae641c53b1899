"""Layout invariance: every parallel layout equals a plain single-process Hugging Face run.

Both sides come from ``shardwise.verify``, which ``shardwise verify`` runs too: the parallel side
trains through the trainer's own functions in torchrun workers; the reference never touches
shardwise's model code or process groups (``AutoModelForCausalLM`` with its own forward, torch's
AdamW and ``clip_grad_norm_``, the token-level mean over the whole global batch). Only the data
order, the initial weights (``init_weights`` on plain tensors) and the LR schedule are shared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache

import pytest
import torch
from _parity_cases import (
    CP_EAGER_VARIANT,
    CP_MOE_VARIANT,
    CP_PHI3_VARIANT,
    CP_VARIANTS,
    FAMILY_VARIANTS,
    HEADS3_VARIANT,
    MOE_AC_VARIANT,
    REPLICATED_VARIANTS,
    VARIANTS,
    case_overrides,
    variant_presets,
)
from conftest import assert_same_steps, torchrun

from shardwise.config import load_config
from shardwise.verify import compare, register_presets, run_reference, seq_len

PRESETS = variant_presets()
register_presets(PRESETS)  # for the references, built in this process

# name: (overrides, processes, variants). One torchrun per layout trains all of its variants.
LAYOUTS = {
    "tp2": ({"parallel.tp": 2, "parallel.sequence_parallel": False, "parallel.loss_parallel": False}, 2,
            VARIANTS + FAMILY_VARIANTS),
    "tp2-sp-lp": ({"parallel.tp": 2, "parallel.sequence_parallel": True, "parallel.loss_parallel": True}, 2,
                  VARIANTS + FAMILY_VARIANTS),
    "dp2xtp2-sp-lp": ({"parallel.dp_shard": 2, "parallel.tp": 2}, 4, VARIANTS + FAMILY_VARIANTS),
    # Mixed 1D/2D parameters (norms stay FSDP-only without SP), with full activation checkpointing, and FSDP
    # blocks kept gathered from forward to backward (what parallel.reshard_after_forward=auto picks where it fits).
    "dp2xtp2-nosp-ac": ({"parallel.dp_shard": 2, "parallel.tp": 2, "parallel.sequence_parallel": False,
                         "train.activation_checkpointing": "full", "parallel.reshard_after_forward": "false"}, 4,
                        VARIANTS),
    "hsdp2xtp2-sac": ({"parallel.dp_replicate": 2, "parallel.dp_shard": 1, "parallel.tp": 2,
                       "train.activation_checkpointing": "selective"}, 4, VARIANTS),
    # More TP ranks than KV heads: each KV head computed by 2 (or 4) ranks.
    "tp4-sp-lp": ({"parallel.dp_shard": 1, "parallel.tp": 4}, 4, REPLICATED_VARIANTS),
    # Attention computed by each TP rank over its own whole sequences, every head, weights replicated over TP ranks
    # (parallel.tp_attention=sequences): every family at tp=2; with FSDP and full checkpointing; at tp=4 with KV
    # heads fewer than ranks, fused q/k/v, full-width q/k norms and 3 query heads, which no head split can share.
    "tp2-seqattn": ({"parallel.tp": 2, "parallel.tp_attention": "sequences"}, 2, VARIANTS + FAMILY_VARIANTS),
    "dp2xtp2-seqattn-ac": ({"parallel.dp_shard": 2, "parallel.tp": 2, "parallel.tp_attention": "sequences",
                            "train.activation_checkpointing": "full"}, 4, [*VARIANTS, MOE_AC_VARIANT]),
    "tp4-seqattn": ({"parallel.dp_shard": 1, "parallel.tp": 4, "parallel.tp_attention": "sequences",
                     "train.micro_batch_size": 4}, 4, [*REPLICATED_VARIANTS, HEADS3_VARIANT]),
    # Each sequence split over 2 context-parallel ranks (packed documents crossing the chunks): alone, with
    # TP's sequence and loss parallelism, and with FSDP over dp_shard x cp and full activation checkpointing.
    # Rows cut into 2*cp chunks of tp shards unpadded: 32 tokens, not 31.
    "cp2": ({"parallel.dp_shard": 1, "parallel.cp": 2, "parallel.tp": 1, "train.seq_len": seq_len(2, 1)}, 2,
            CP_VARIANTS),
    "cp2xtp2-sp-lp": ({"parallel.dp_shard": 1, "parallel.cp": 2, "parallel.tp": 2, "train.seq_len": seq_len(2, 2)}, 4,
                      [*CP_VARIANTS, CP_EAGER_VARIANT, CP_PHI3_VARIANT, CP_MOE_VARIANT]),
    "dp2xcp2-ac": ({"parallel.dp_shard": 2, "parallel.cp": 2, "parallel.tp": 1, "train.seq_len": seq_len(2, 1),
                    "train.activation_checkpointing": "full"}, 4, CP_VARIANTS),
    # One document per row (no boundary, no mask: every attention call takes the ring) with K/V passed round
    # the CP ring: alone, and at cp=4 (three hops) with full activation checkpointing (the ring again in the
    # recomputation).
    "cp2-ring": ({"parallel.dp_shard": 1, "parallel.cp": 2, "parallel.tp": 1, "train.seq_len": seq_len(2, 1),
                  "parallel.cp_exchange": "ring", "data.packing": False}, 2, CP_VARIANTS),
    "cp4-ring-ac": ({"parallel.dp_shard": 1, "parallel.cp": 4, "parallel.tp": 1, "train.seq_len": seq_len(4, 1),
                     "parallel.cp_exchange": "ring", "data.packing": False, "train.activation_checkpointing": "full"},
                    4, CP_VARIANTS[1:]),
}
CASES = [(name, variant) for name, (_, _, variants) in LAYOUTS.items() for variant in variants]


@cache
def reference(variant: str, length: int, packing: bool, micro_batch: int) -> dict:
    """Plain HF model, one process, fp32, rows of ``length`` tokens (packed or not): losses, logits (of the first
    ``micro_batch`` rows), first-step grads, final weights."""
    overrides = {"parallel.tp": 1, "train.seq_len": length, "data.packing": packing,
                 "train.micro_batch_size": micro_batch}
    return run_reference(load_config(None, case_overrides(variant, overrides)))


@pytest.fixture(scope="module")
def layout_results(tmp_path_factory) -> Callable[[str], dict[str, dict]]:
    """Rank 0's results of a layout's variants, all trained by one torchrun the first time a test asks."""
    runs: dict[str, dict[str, dict] | None] = {}

    def results(name: str) -> dict[str, dict]:
        if name in runs and runs[name] is None:
            pytest.fail(f"the {name} run failed; see its first test")
        if name not in runs:
            runs[name] = None
            overrides, world, variants = LAYOUTS[name]
            out = tmp_path_factory.mktemp(name) / "results.pt"
            cases = [case_overrides(v, overrides) for v in variants]
            torchrun(world, "shardwise.verify", "--presets", json.dumps(PRESETS), "--cases", json.dumps(cases),
                     "--out", str(out))
            runs[name] = dict(zip(variants, torch.load(out)))
        return runs[name]

    return results


@pytest.mark.parametrize("layout,variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_layout_matches_single_process(layout_results, layout, variant):
    """Parameter count, first-step loss (1e-5) and every gradient (1e-4), logits at init (1e-5), every
    step's loss (1e-4), the grad norm (1e-4 at step 1, 1e-3 after) and the final weights (1e-3), all relative; see
    verify.TOLERANCE."""
    case = case_overrides(variant, LAYOUTS[layout][0])
    want = reference(variant, case["train.seq_len"], case.get("data.packing", True), case["train.micro_batch_size"])
    failed = [c.line() for c in compare(layout_results(layout)[variant], want) if not c.ok]
    assert not failed, f"{layout}/{variant}:\n" + "\n".join(failed)


def test_async_tp_overlaps_before_it_splits(monkeypatch):
    """``parallel.async_tp=true`` turns on inductor's micro-pipeline split *and* its reorder passes (measured
    together: 1.04x on 2xH200, BENCHMARKS.md), and symmetric memory for the TP group; on CPU it refuses."""
    import torch._inductor.config as inductor
    import torch.distributed._symmetric_memory as symm_mem

    from shardwise import parallelize
    from shardwise.config import ConfigError

    for key in ("_micro_pipeline_tp", "reorder_for_compute_comm_overlap", "reorder_for_compute_comm_overlap_passes"):
        monkeypatch.setattr(inductor, key, getattr(inductor, key))
    enabled = []
    monkeypatch.setattr(symm_mem, "enable_symm_mem_for_group", enabled.append)
    mesh = type("Mesh", (), {"device_type": "cuda", "get_group": lambda self: type("G", (), {"group_name": "tp"})})()
    parallelize.apply_async_tp(mesh)
    assert inductor._micro_pipeline_tp and inductor.reorder_for_compute_comm_overlap and enabled == ["tp"]
    assert inductor.reorder_for_compute_comm_overlap_passes == ["reorder_compute_for_overlap", "sink_waits",
                                                                "raise_comms"]
    mesh.device_type = "cpu"
    with pytest.raises(ConfigError, match="parallel.async_tp=true needs CUDA GPUs"):
        parallelize.apply_async_tp(mesh)


def test_compiled_moe_experts_outside_bf16_need_a_transformers_that_can_trace_them(monkeypatch):
    """Outside bf16, transformers' grouped-matmul MoE experts fall back to a loop whose backward transformers 5.17
    leaves open to tracing: a compiled run fails deep in dynamo (a data-dependent guard; seen on an H200 and, with
    5.17 installed, on CPU). Such a run is refused in one line naming the fixes; bf16, a dense model and a
    transformers that wraps that backward in an op (5.24) pass."""
    from shardwise import parallelize
    from shardwise.config import ConfigError
    from shardwise.model import build_meta_model, hf_config

    moe, dense = (build_meta_model(hf_config(load_config(None, {"model.preset": p}).model))
                  for p in ("tiny-qwen2-moe", "tiny-llama"))
    monkeypatch.setattr(parallelize, "_traceable_experts_fallback", lambda: False)
    with pytest.raises(ConfigError, match=r"compiled qwen2_moe experts in float32 .* set train.dtype=bfloat16 or "
                                          r"train.compile=false, or upgrade transformers"):
        parallelize.check_compile(moe, torch.float32)
    parallelize.check_compile(moe, torch.bfloat16)
    parallelize.check_compile(dense, torch.float32)
    monkeypatch.setattr(parallelize, "_traceable_experts_fallback", lambda: True)
    parallelize.check_compile(moe, torch.float32)


@pytest.mark.parametrize("reshard", ["false", "true"])
def test_kept_blocks_stay_gathered_through_the_micro_batches(tmp_path, reshard):
    """dp_shard=2, 4 micro-batches per rank, bf16 compute on fp32 master weights: with blocks kept gathered from
    forward to backward every unit is gathered once per step instead of once per micro-batch, and the losses,
    gradients and weights are bit for bit those of resharding every unit after each backward; with blocks freed
    after forward nothing changes (the root and the last block once per micro-batch, the others twice)."""
    out = tmp_path / "results.pt"
    overrides = {"model.preset": "tiny-qwen2", "model.dtype": "float32", "train.dtype": "bfloat16",
                 "parallel.dp_shard": 2, "parallel.tp": 1, "parallel.reshard_after_forward": reshard,
                 "train.seq_len": 32, "train.global_batch_size": 8, "train.micro_batch_size": 1,
                 "output.progress": False}
    torchrun(2, "_fsdp_gather_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    kept, resharded = (r := torch.load(out))["kept"], r["resharded"]
    units, micro_batches = kept["units"], 4
    if reshard == "false":
        assert (kept["gathers"], resharded["gathers"]) == (units, units * micro_batches)
    else:
        each = micro_batches * (2 + 2 * (units - 2))
        assert (kept["gathers"], resharded["gathers"]) == (each, each)
    assert_same_steps(kept, resharded)
