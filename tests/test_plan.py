"""``shardwise plan``: its shapes are the real run's, and it flags what will fail."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import torchrun
from transformers import AutoConfig

from shardwise import plan
from shardwise.cli import main
from shardwise.config import ModelConfig, load_config
from shardwise.model import PRESETS, hf_config
from shardwise.plan import RECOMMEND_HEADROOM, group_name

# Three layouts on one 4-process world: FSDP x TP with sequence and loss parallel (Qwen3's q/k norms
# included), HSDP x TP without sequence parallelism (norms stay off the TP mesh), and tp=4 over 2 KV heads.
CASES = {
    "tiny-qwen3 dp_shard=2 x tp=2": {"model.preset": "tiny-qwen3", "parallel.dp_shard": 2, "parallel.tp": 2},
    "tiny-llama dp_replicate=2 x tp=2, SP off": {
        "model.preset": "tiny-llama", "parallel.dp_replicate": 2, "parallel.dp_shard": 1, "parallel.tp": 2,
        "parallel.sequence_parallel": False},
    "tiny-phi3 tp=4 (fused q/k/v, each KV head on 2 ranks)": {"model.preset": "tiny-phi3", "parallel.dp_shard": 1,
                                                              "parallel.tp": 4},
    "tiny-llama cp=2 x tp=2 (FSDP over the CP ranks)": {"model.preset": "tiny-llama", "parallel.dp_shard": 1,
                                                        "parallel.cp": 2, "parallel.tp": 2},
}
SHORT_RUN = {"train.steps": 1, "train.seq_len": 16, "train.global_batch_size": 4, "train.micro_batch_size": 1,
             "output.progress": False}


def plan_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["plan", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def overrides(case: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in {**SHORT_RUN, **case}.items()]


def test_plan_shapes_are_the_real_run_shapes(tmp_path, capsys):
    """Rank 0's local shape and placements of every parameter, from a real gloo run, equal the plan's rows."""
    out = tmp_path / "results.pt"
    torchrun(4, "shardwise.verify", "--cases", json.dumps([{**SHORT_RUN, **c} for c in CASES.values()]),
             "--out", str(out))
    for (name, case), real in zip(CASES.items(), torch.load(out)):
        code, plan = plan_json(capsys, *overrides(case), "--world-size=4")
        assert code == 0, plan["checks"]
        rows = {row["name"]: row for row in plan["parameters"]}
        assert Counter(group_name(n) for n in real["layout"]) == {k: r["count"] for k, r in rows.items()}, name
        for param, got in real["layout"].items():
            row = rows[group_name(param)]
            assert {k: row[k] for k in got} == got, f"{name}: {param}"
        assert plan["num_params"] == real["num_params"]


@pytest.mark.parametrize("master", ["float32", "bfloat16"])
def test_memory_over_budget_is_flagged(capsys, master):
    """llama3-8b on 2 devices cannot fit 10 GiB; the training state counts rank 0's shards exactly, in model.dtype."""
    code, plan = plan_json(capsys, "--model.preset=llama3-8b", "--parallel.tp=2", "--world-size=2",
                           "--train.seq_len=1024", "--train.micro_batch_size=1", "--train.global_batch_size=2",
                           "--device-memory-gib=10", f"--model.dtype={master}")
    assert code == 1 and plan["ok"] is False
    (memory,) = [c for c in plan["checks"] if c["check"] == "memory"]
    assert not memory["ok"] and "more than --device-memory-gib=10" in memory["message"]
    local = sum(r["count"] * torch.Size(r["local_shape"]).numel() for r in plan["parameters"])
    mem = plan["memory_bytes"]
    size = getattr(torch, master).itemsize
    assert (mem["parameters"], mem["gradients"], mem["optimizer_states"]) == (size * local, size * local, 2 * size * local)
    assert mem["total"] > 10 * 2**30 and plan["compute_dtype"] == "bfloat16"
    assert plan["comm_bytes"]["tp"]["per_step_bytes"]["all_gather_into_tensor"] > 0


def test_every_failure_is_listed(capsys):
    """tp=3 splits none of tiny-llama's heads, KV heads, vocab or MLP; all four are flagged, not just the first."""
    code, plan = plan_json(capsys, "--model.preset=tiny-llama", "--parallel.tp=3", "--world-size=3",
                           "--train.seq_len=4096")
    assert code == 1
    failed = [c["message"] for c in plan["checks"] if not c["ok"]]
    assert failed == [
        "attention heads (4) is not divisible by parallel.tp=3; use parallel.tp in [1, 2]",
        "KV heads (2) is neither divisible by nor a divisor of parallel.tp=3; use parallel.tp in [1, 2]",
        "vocab size (320) is not divisible by parallel.tp=3; use parallel.tp in [1, 2]",
        "intermediate size (352) is not divisible by parallel.tp=3; use parallel.tp in [1, 2]",
        "train.seq_len=4096 exceeds the model's max_position_embeddings=2048",
    ]
    assert "parameters" not in plan  # nothing is sharded with a plan that cannot apply


@pytest.mark.parametrize("preset,tp,heads,kv_replicas", [("tiny-llama", 2, "2 query, 1 KV", 1),
                                                         ("tiny-llama", 4, "1 query, 1 KV", 2),
                                                         ("tiny-phi3", 4, "1 query, 1 KV", 2)])
def test_kv_replication_is_shown(capsys, preset, tp, heads, kv_replicas):
    """tp beyond the KV heads is planned, not refused: each KV head on tp / KV heads ranks, K/V shapes as stored."""
    code, plan = plan_json(capsys, f"--model.preset={preset}", f"--parallel.tp={tp}", f"--world-size={tp}")
    assert code == 0 and plan["heads"]["ranks_per_kv_head"] == kv_replicas
    assert main(["plan", f"--model.preset={preset}", f"--parallel.tp={tp}", f"--world-size={tp}"]) == 0
    text = capsys.readouterr().out
    assert f"attention heads per rank: {heads}" in text
    assert ("KV heads replicated: each computed by 2 ranks" in text) == (kv_replicas == 2)


@pytest.mark.parametrize("args,message", [
    (["--world-size=6", "--parallel.dp_shard=2", "--parallel.tp=2"],
     "parallel.dp_replicate*dp_shard*cp*tp = 1*2*1*2 = 4 but the world size is 6"),
    (["--world-size=4", "--train.global_batch_size=6", "--train.micro_batch_size=2"],
     "train.global_batch_size=6 must be a multiple of dp (2)"),
])
def test_layout_and_batch_failures(capsys, args, message):
    code, plan = plan_json(capsys, *args)
    assert code == 1 and any(message in c["message"] for c in plan["checks"] if not c["ok"])


def test_default_world_size_and_text_output(capsys):
    """Without --world-size the plan is for what `shardwise train` would start: 4 CPU processes here."""
    assert main(["plan"]) == 0
    text = capsys.readouterr().out
    assert "mesh: dp_replicate=1 x dp_shard=2 x cp=1 x tp=2 = 4 devices" in text
    assert "model.layers.*.self_attn.o_proj.weight" in text and "ok    memory" not in text


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen3"])
@pytest.mark.parametrize("sp,expected", [
    (True, {"all_gather_into_tensor": 4, "reduce_scatter_tensor": 4, "all_reduce": 0}),
    (False, {"all_gather_into_tensor": 0, "reduce_scatter_tensor": 0, "all_reduce": 4}),
])
def test_tp_collectives_per_block_are_megatrons(capsys, preset, sp, expected):
    """Forward + backward of one block: with SP, one all-gather and one reduce-scatter around attention
    and around the MLP, each way; without, one all-reduce each way. Never one per projection."""
    _, report = plan_json(capsys, f"--model.preset={preset}", "--parallel.tp=2",
                          f"--parallel.sequence_parallel={sp}")
    calls = {k: v["calls"] for k, v in report["comm_bytes"]["tp"]["per_layer_per_micro_batch"].items()}
    assert {k: calls[k] for k in expected} == expected


@pytest.mark.parametrize("preset,norms", [("tiny-mixtral", 0), ("tiny-olmoe", 4), ("tiny-qwen3-moe", 0)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_experts_add_no_tp_collectives(capsys, preset, norms, dtype):
    """Every block of these is a mixture of experts on each rank's own tokens: a block's forward + backward keeps
    attention's all-gather and reduce-scatter each way (and OLMoE's q and k norms over the whole projection, an
    all-reduce each, each way) and nothing for the experts, in fp32 as in bf16 (torch's meta grouped matmul takes
    bf16 only, and the plan traces on meta tensors)."""
    _, report = plan_json(capsys, f"--model.preset={preset}", "--parallel.tp=2", f"--train.dtype={dtype}")
    calls = {k: v["calls"] for k, v in report["comm_bytes"]["tp"]["per_layer_per_micro_batch"].items()}
    assert calls == {"all_gather_into_tensor": 2, "reduce_scatter_tensor": 2, "all_reduce": norms,
                     "all_to_all_single": 0}


def test_attention_per_sequence_keeps_only_the_mlps_collectives(capsys):
    """``parallel.tp_attention=sequences``: a block's forward + backward keeps the MLP's all-gather and reduce-scatter
    only, half the bytes; once a step the replicated attention weights' and norms' gradients are all-reduced (at
    tp=2 a rank sends their size); parameters take more memory and activations less (attention's input is not
    gathered), and each rank attends with every head over its micro-batch's rows; micro-batches it recommends give
    every TP rank whole rows."""
    args = ["--model.preset=tiny-qwen2", "--parallel.tp=2", "--world-size=2", "--train.micro_batch_size=4"]
    _, heads = plan_json(capsys, *args)
    _, rows = plan_json(capsys, *args, "--parallel.tp_attention=sequences")
    per_layer = {k: (v["calls"], v["bytes"]) for k, v in rows["comm_bytes"]["tp"]["per_layer_per_micro_batch"].items()}
    split = {k: (v["calls"], v["bytes"]) for k, v in heads["comm_bytes"]["tp"]["per_layer_per_micro_batch"].items()}
    for kind in ("all_gather_into_tensor", "reduce_scatter_tensor"):
        assert per_layer[kind] == (split[kind][0] // 2, split[kind][1] // 2) == (2, split[kind][1] // 2)
    config = hf_config(ModelConfig(preset="tiny-qwen2"))
    h, kv = config.hidden_size, config.num_key_value_heads * config.hidden_size // config.num_attention_heads
    attention = (h * h + h) + 2 * (h * kv + kv) + h * h  # q, k, v with biases; o
    assert rows["comm_bytes"]["tp"]["per_step_bytes"]["all_reduce"] - heads["comm_bytes"]["tp"]["per_step_bytes"][
        "all_reduce"] == 4 * config.num_hidden_layers * attention
    # the flat buffer those gradients are summed in before the step
    assert rows["memory_bytes"]["partial_grad_sum"] - heads["memory_bytes"]["partial_grad_sum"] == (
        4 * config.num_hidden_layers * attention)
    assert rows["memory_bytes"]["parameters"] > heads["memory_bytes"]["parameters"]
    assert rows["memory_bytes"]["activations"] < heads["memory_bytes"]["activations"]
    assert rows["heads"] == {"query_heads_per_rank": 4, "kv_heads_per_rank": 2, "ranks_per_kv_head": 1,
                             "rows_per_rank": 2}
    # what it recommends runs: a budget that fits micro-batches of 3 of a rank's 6 sequences, not 6, gets 3 split by
    # heads and 2, whole rows on each TP rank, per sequence
    six = [*args[:-1], "--train.global_batch_size=6", "--train.seq_len=1024"]
    _, three = plan_json(capsys, *six, "--train.micro_batch_size=3", "--device-memory-gib=80")
    budget = f"--device-memory-gib={three['memory_bytes']['total'] / 0.9 / 2**30 * 1.001}"
    for attention, micro in (("heads", 3), ("sequences", 2)):
        _, fit = plan_json(capsys, *six, budget, f"--parallel.tp_attention={attention}")
        assert (fit["recommended"]["activation_checkpointing"], fit["recommended"]["micro_batch_size"]) == (
            "none", micro)


def test_async_tp_plans_like_tp(capsys):
    """Async TP reschedules the same collectives on GPUs: the plan (on CPU) counts the same bytes and memory,
    rather than failing on CPU as a run there would."""
    args = ["--model.preset=tiny-llama", "--parallel.tp=2", "--world-size=2", "--train.compile=true"]
    code, fused = plan_json(capsys, *args, "--parallel.async_tp=true")
    assert code == 0, fused["checks"]
    _, plain = plan_json(capsys, *args)
    assert (fused["comm_bytes"], fused["memory_bytes"]) == (plain["comm_bytes"], plain["memory_bytes"])


@pytest.mark.parametrize("tp,checkpointing,gathers", [(1, "none", 1), (2, "none", 1), (1, "full", 2)])
def test_cp_collectives_per_block_gather_kv_once(capsys, tp, checkpointing, gathers):
    """Forward + backward of one block at cp=2: one all-gather of this rank's K and V (again when the block is
    recomputed) and one reduce-scatter of their gradients, as many bytes as K/V of this rank's heads hold."""
    seq, batch = 64, 2
    _, report = plan_json(capsys, "--model.preset=tiny-llama", "--parallel.cp=2", f"--parallel.tp={tp}",
                          f"--world-size={2 * tp}", f"--train.seq_len={seq}", f"--train.micro_batch_size={batch}",
                          f"--train.global_batch_size={batch}", f"--train.activation_checkpointing={checkpointing}")
    layer = report["comm_bytes"]["cp"]["per_layer_per_micro_batch"]
    kv_bytes = 2 * batch * seq * (2 * 32 // tp) * 4  # K and V of the whole rows: 2 KV heads of 32, fp32, over tp
    assert layer["all_gather_into_tensor"] == {"calls": gathers, "bytes": gathers * kv_bytes / 2}  # the other half
    assert layer["reduce_scatter_tensor"] == {"calls": 1, "bytes": kv_bytes / 2}
    assert layer["all_reduce"]["calls"] == layer["all_to_all_single"]["calls"] == 0


@pytest.mark.parametrize("cp,checkpointing,passes", [(2, "none", 1), (4, "none", 1), (2, "full", 2)])
def test_cp_ring_passes_kv_blocks_and_keeps_only_its_own(capsys, cp, checkpointing, passes):
    """Round the ring, forward + backward of one block: ``cp-1`` shifts of this rank's K and V forward (again when
    the block is recomputed) and in backward, and ``cp`` of their fp32 gradients, each sending the whole block (in
    ``cp+1`` messages in backward); no all-gather. Backward keeps only this rank's K/V: ``(2·cp·hq - 2·hkv)·e``
    bytes per token and layer fewer than all-gathered (bf16, eager)."""
    seq, batch = 64, 2
    args = ["--model.preset=tiny-llama", f"--parallel.cp={cp}", "--parallel.tp=1", f"--world-size={cp}",
            f"--train.seq_len={seq}", f"--train.micro_batch_size={batch}", f"--train.global_batch_size={batch}",
            f"--train.activation_checkpointing={checkpointing}", "--data.packing=false", "--train.dtype=bfloat16",
            "--train.compile=false"]
    _, ring = plan_json(capsys, *args, "--parallel.cp_exchange=ring")
    _, gather = plan_json(capsys, *args)
    layer = ring["comm_bytes"]["cp"]["per_layer_per_micro_batch"]
    kv_bytes = 2 * batch * (seq // cp) * 64 * 2  # this rank's K and V: 2 KV heads of 32 dims, bf16
    blocks = passes * (cp - 1) + (cp - 1)  # K/V blocks sent forward (per pass) and in backward
    calls = passes * (cp - 1) + cp + 1  # backward: K/V and a gradient accumulator share a message
    assert layer["all_to_all_single"] == {"calls": calls, "bytes": blocks * kv_bytes + cp * 2 * kv_bytes}
    assert layer["all_gather_into_tensor"]["calls"] == layer["reduce_scatter_tensor"]["calls"] == 0
    if checkpointing == "none":
        fewer = gather["memory_bytes"]["activations"] - ring["memory_bytes"]["activations"]
        assert fewer == 4 * (batch * seq // cp) * (2 * cp * 128 - 2 * 64) * 2  # 4 layers, hq=128, hkv=64, bf16


@pytest.mark.parametrize("checkpointing", ["none", "full"])
def test_flex_under_cp_keeps_grouped_kv_and_no_dense_masks(capsys, checkpointing):
    """Packed rows under cp=2 through dense masks hold the mask (1 byte per local query and key) and, in each layer
    kept for backward, sdpa's additive copy of it (``e`` bytes), and every rank's K/V repeated to the query heads;
    through flex none of the masks, and K/V as gathered: ``2·cp·(hq - hkv)·e`` bytes per token and layer fewer."""
    seq, batch, cp = 64, 2, 2
    args = ["--model.preset=tiny-llama", f"--parallel.cp={cp}", "--parallel.tp=1", f"--world-size={cp}",
            f"--train.seq_len={seq}", f"--train.micro_batch_size={batch}", f"--train.global_batch_size={batch}",
            f"--train.activation_checkpointing={checkpointing}", "--train.dtype=bfloat16", "--train.compile=false"]
    _, mask = plan_json(capsys, *args, "--model.packed_attention=mask")
    _, flex = plan_json(capsys, *args, "--model.packed_attention=flex")
    tokens, kept = batch * seq // cp, 4 if checkpointing == "none" else 0  # tiny-llama: 4 layers, hq=128, hkv=64
    bias = tokens * seq * 2
    assert mask["memory_bytes"]["attention_masks"] == tokens * seq and flex["memory_bytes"]["attention_masks"] == 0
    kv = kept * tokens * 2 * cp * (128 - 64) * 2
    assert mask["memory_bytes"]["activations"] - flex["memory_bytes"]["activations"] == kv + kept * bias
    recompute = mask["memory_bytes"]["recompute"] - flex["memory_bytes"]["recompute"]
    assert recompute == (0 if kept else tokens * 2 * cp * (128 - 64) * 2 + bias)


def test_cp_divides_activations_and_adds_masks(capsys):
    """cp=2 holds half of each row's tokens (half the logits); its attention mask is local queries x all keys."""
    args = ["--model.preset=tiny-llama", "--parallel.tp=1", "--train.seq_len=64", "--train.global_batch_size=4",
            "--train.micro_batch_size=2"]
    _, one = plan_json(capsys, *args, "--parallel.dp_shard=2", "--world-size=2")
    _, two = plan_json(capsys, *args, "--parallel.dp_shard=2", "--parallel.cp=2", "--world-size=4")
    assert two["memory_bytes"]["logits"] == one["memory_bytes"]["logits"] / 2
    assert two["memory_bytes"]["attention_masks"] == 2 * 32 * 64 and "attention_masks" not in one["memory_bytes"]
    local = {r["name"]: r["local_shape"] for r in two["parameters"]}
    assert local["model.layers.*.mlp.up_proj.weight"] == [352 // 4, 128]  # FSDP over dp_shard x cp = 4 ranks
    assert two["comm_bytes"]["fsdp"]["all_gather"] > one["comm_bytes"]["fsdp"]["all_gather"]


def test_recommends_the_fastest_setting_that_fits(capsys):
    """With a memory budget the plan names the fastest setting that fits 90% of it (the allocator's headroom): no
    checkpointing at the largest micro-batch that fits, else full checkpointing; its estimate is the same model's
    estimate at that setting."""
    args = ["--model.preset=qwen2-1.5b", "--parallel.tp=2", "--world-size=2", "--train.seq_len=4096",
            "--train.global_batch_size=8", "--train.activation_checkpointing=full", "--train.micro_batch_size=1"]
    _, roomy = plan_json(capsys, *args, "--device-memory-gib=80")
    rec = roomy["recommended"]
    limit = RECOMMEND_HEADROOM * 80 * 2**30
    assert rec["activation_checkpointing"] == "none" and rec["total_bytes"] <= limit and not rec["tight"]
    setting = [f"--train.activation_checkpointing={rec['activation_checkpointing']}",
               f"--train.micro_batch_size={rec['micro_batch_size']}"]
    _, same = plan_json(capsys, *args, *setting, "--device-memory-gib=80")
    assert same["memory_bytes"]["total"] == rec["total_bytes"] and same["ok"]
    if rec["micro_batch_size"] < 8:  # the next larger split would not have fit
        bigger = next(mb for mb in range(rec["micro_batch_size"] + 1, 9) if 8 % mb == 0)
        _, over = plan_json(capsys, *args, "--train.activation_checkpointing=none",
                            f"--train.micro_batch_size={bigger}", "--device-memory-gib=80")
        assert over["memory_bytes"]["total"] > limit
    _, tight = plan_json(capsys, *args, "--device-memory-gib=20")
    assert tight["recommended"]["activation_checkpointing"] == "full"
    smallest = roomy["memory_bytes"]["total"]  # args' own setting: full checkpointing at micro-batch 1
    _, edge = plan_json(capsys, *args, f"--device-memory-gib={smallest / 0.95 / 2**30}")  # fits only above 90%
    assert edge["recommended"]["tight"] and edge["recommended"]["total_bytes"] == smallest
    _, hopeless = plan_json(capsys, "--model.preset=llama3-8b", "--parallel.tp=1", "--world-size=1",
                            "--device-memory-gib=80")
    assert hopeless["recommended"] is None
    assert main(["plan", *args, "--device-memory-gib=80"]) == 0
    assert "recommended for 80 GiB (within 90% of it): --train.activation_checkpointing=none" in capsys.readouterr().out


def test_recommends_keeping_blocks_gathered_where_that_fits(capsys):
    """With FSDP the plan keeps blocks gathered from forward to backward (one all-gather per block per micro-batch
    instead of two) where that fits too, after the largest micro-batch; without FSDP it has nothing to choose."""
    args = ["--model.preset=llama3-8b", "--model.dtype=bfloat16", "--world-size=2", "--train.seq_len=4096",
            "--train.global_batch_size=8", "--train.micro_batch_size=1", "--train.activation_checkpointing=none"]
    _, reshard = plan_json(capsys, *args, "--parallel.tp=1", "--parallel.reshard_after_forward=true",
                           "--device-memory-gib=80")
    _, keep = plan_json(capsys, *args, "--parallel.tp=1", "--parallel.reshard_after_forward=false",
                        "--device-memory-gib=80")
    assert keep["memory_bytes"]["total"] > reshard["memory_bytes"]["total"]
    assert keep["comm_bytes"]["fsdp"]["all_gather"] < reshard["comm_bytes"]["fsdp"]["all_gather"]
    rec = reshard["recommended"]
    assert (rec["micro_batch_size"], rec["reshard_after_forward"]) == (1, False)
    assert rec["total_bytes"] == keep["memory_bytes"]["total"]
    between = (reshard["memory_bytes"]["total"] + keep["memory_bytes"]["total"]) / 2 / RECOMMEND_HEADROOM / 2**30
    _, tighter = plan_json(capsys, *args, "--parallel.tp=1", f"--device-memory-gib={between}")
    assert tighter["recommended"]["reshard_after_forward"] is True
    assert main(["plan", *args, "--parallel.tp=1", "--device-memory-gib=80"]) == 0
    assert "--train.micro_batch_size=1 --parallel.reshard_after_forward=false (about" in capsys.readouterr().out
    _, tp_only = plan_json(capsys, *args, "--parallel.tp=2", "--device-memory-gib=80")
    assert tp_only["recommended"]["reshard_after_forward"] is None
    assert main(["plan", *args, "--parallel.tp=2", "--device-memory-gib=80"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any("FSDP blocks" in line for line in lines)  # the line without TP names FSDP's setting for that run
    assert "reshard_after_forward" not in next(line for line in lines if "recommended for" in line)


def test_auto_keeps_blocks_gathered_where_that_fits(capsys):
    """``parallel.reshard_after_forward=auto`` (the default) plans as ``false`` where keeping blocks gathered fits
    within the recommendation's headroom of the device, else as ``true``; without a device, as ``true``."""
    args = ["--model.preset=llama3-8b", "--model.dtype=bfloat16", "--world-size=2", "--train.seq_len=4096",
            "--train.global_batch_size=8", "--train.micro_batch_size=1", "--parallel.tp=1"]
    _, reshard = plan_json(capsys, *args, "--parallel.reshard_after_forward=true", "--device-memory-gib=80")
    _, keep = plan_json(capsys, *args, "--parallel.reshard_after_forward=false", "--device-memory-gib=80")
    _, auto = plan_json(capsys, *args, "--device-memory-gib=80")
    assert (auto["reshard_after_forward"], auto["memory_bytes"], auto["comm_bytes"]) == (
        False, keep["memory_bytes"], keep["comm_bytes"])
    assert keep["memory_bytes"]["total"] > reshard["memory_bytes"]["total"]
    just_under = keep["memory_bytes"]["total"] / RECOMMEND_HEADROOM / 2**30 * 0.999
    _, tight = plan_json(capsys, *args, f"--device-memory-gib={just_under}")
    assert (tight["reshard_after_forward"], tight["memory_bytes"]) == (True, reshard["memory_bytes"])
    _, nowhere = plan_json(capsys, *args)
    assert nowhere["reshard_after_forward"] is True
    assert main(["plan", *args, "--device-memory-gib=80"]) == 0
    assert ("FSDP blocks: kept gathered from forward to backward (parallel.reshard_after_forward=auto: keeping them "
            "fits within 90% of 80 GiB)") in capsys.readouterr().out



@pytest.mark.parametrize("master", ["float32", "bfloat16"])
def test_nothing_fits_names_what_to_change(capsys, master):
    """More ranks always; bf16 weights only when they are fp32 now."""
    assert main(["plan", "--model.preset=llama3-8b", "--parallel.tp=1", "--world-size=1", "--device-memory-gib=40",
                 f"--model.dtype={master}"]) == 1
    out = capsys.readouterr().out
    assert "recommended: nothing fits 40 GiB, even with full checkpointing at micro-batch 1: raise parallel.tp" in out
    assert ("set model.dtype=bfloat16" in out) is (master == "float32")


def test_nothing_fits_a_mixture_of_experts_names_fsdp_first(capsys, tmp_path):
    """Released Mixtral-8x7B shapes at tp=2 on 2 devices of 80 GiB: its experts, most of its 47B weights, are
    replicated over TP ranks, so more FSDP ranks are the fix that shrinks them."""
    spec = dict(PRESETS["llama3-8b"], model_type="mixtral", vocab_size=32000, num_local_experts=8,
                num_experts_per_tok=2, max_position_embeddings=32768, sliding_window=None)
    AutoConfig.for_model(spec.pop("model_type"), **spec).save_pretrained(tmp_path)
    args = [f"--model.path={tmp_path}", "--parallel.tp=2", "--world-size=2", "--device-memory-gib=80"]
    code, report = plan_json(capsys, *args)
    assert code == 1 and report["model"]["experts"] == 8 and report["recommended"] is None
    assert main(["plan", *args]) == 1
    assert ("nothing fits 80 GiB, even with full checkpointing at micro-batch 1: raise parallel.dp_shard (the experts "
            "are sharded by FSDP only, not over TP ranks), parallel.tp or (long sequences) parallel.cp, or set "
            "model.dtype=bfloat16") in capsys.readouterr().out


# Peaks measured on GPUs (benchmarks/results): ``shardwise bench`` sweeps (compiled and eager) and the GPU smoke's
# eager runs. The sweep records leave out model.dtype: the bf16-master runs are the `*bf16*` ones and BF16_ROWS.
RESULTS = Path(__file__).parents[1] / "benchmarks" / "results"
SWEEP_ROWS = {
    "2026-11-25-h100x2-llama8b-b": ["dp2bf16/sw-full-compile"],
    "2026-11-25-h100x2-cp": ["cp1-32k/sw-full-compile", "cp2-32k/sw-full-compile", "cp2-16k/sw-full-compile",
                             "cp2-8k/sw-full-compile"],
    "2026-11-25-h100x2-tp-speed-c": ["dp2/sw-none-compile-mb4", "tp2e/sw-full-eager"],
    # 2xH200, CP attention without a mask (rows without document boundaries), fp32 and bf16 master weights
    "2026-11-25-h200x2-cp-flash": ["cp2-32k-bf16/sw-full-compile", "dp2-32k-bf16/sw-full-compile",
                                   "cp2-32k-fp32/sw-full-compile", "dp2-32k-fp32/sw-full-compile"],
    "2026-11-25-h200x2-cp-flash-b": ["cp2-16k-bf16/sw-full-compile", "dp2-16k-bf16/sw-full-compile",
                                     "cp2-8k-bf16/sw-full-compile", "dp2-8k-bf16/sw-full-compile"],
    "2026-11-25-h200x2-cp-flash-c": ["cp2-128k-bf16/sw-full-compile", "dp2-128k-bf16-expandable/sw-full-compile"],
    # 2xH200, 2026-11-26: 32k with and without checkpointing (bf16 master); TP rows as on 2xH100 (fp32 master)
    "2026-11-26-h200x2-cp-32k": ["cp2-noac/sw-none-compile", "cp2-full/sw-full-compile", "dp2-full/sw-full-compile"],
    "2026-11-26-h200x2-tp-host": ["dp2/sw-none-compile-mb4", "tp2-eager-fr0/sw-full-eager"],
    # 4xH200 (2-GPU rows beside each other, 4-GPU rows alone), 2026-11-26: CP's ring (with and without
    # checkpointing) and all-gather at 2 and 4 ranks, FSDP at 4, TP rows, Llama-3-8B at tp=2
    "2026-11-26-h200x4-ring-cudagraphs": ["cp2-32k/sw-full-compile", "cp2-32k-ring/sw-full-compile",
                                          "dp2-32k/sw-full-compile", "cp2-32k-ring-noac/sw-none-compile",
                                          "dp2/sw-none-compile-mb4"],
    "2026-11-26-h200x4-overlap-cp4": ["cp4-64k/sw-full-compile", "dp4-64k/sw-full-compile"],
    "2026-11-26-h200x4-async-fused": ["cp4-64k-ring/sw-full-compile"],
    # 4xH200, 2026-11-26: Llama-3-8B without checkpointing (bf16 master), FSDP keeping blocks gathered, eager rows
    "2026-11-26-h200x4-llama8b-noac": ["tp2-sw/sw-none-compile-mb2", "tp2-sw-async/sw-none-compile-mb2-asynctp",
                                       "dp2-sw/sw-none-compile", "dp2-eager/sw-full-eager", "tp2-eager/sw-full-eager"],
    "2026-11-26-h200x4-fsdp-units": ["dp2-main/sw-none-compile", "dp2-gb8/sw-none-compile-mb4",
                                     "dp2-gb32/sw-none-compile-mb4"],
    "2026-11-26-h200x4-keep-gathered": ["dp2-sw/sw-none-compile", "dp2-sw-keep/sw-none-compile",
                                        "dp2/sw-none-compile-mb4", "dp2-keep/sw-none-compile-mb4"],
    "2026-11-26-h200x4-eager-cache": ["tp2-eager-main-1/sw-full-eager", "tp2-eager-cache-1/sw-full-eager",
                                      "tp2-eager-cache-2/sw-full-eager", "dp2-keep-prof/sw-none-compile",
                                      "tp2-prof/sw-none-compile-mb2"],
    # 4xH100, 2026-11-26: the eager rows beside train.cudagraphs ones (whose records have no reserved peak; ``peak``)
    "2026-11-26-h100x4-graphs-renewed": ["tp2-eager-prof/sw-full-eager", "tp2-noac-eager/sw-none-eager",
                                         "tp2-8b-eager/sw-full-eager"],
    "2026-11-26-h100x4-graphs-final": ["tp2-eager/sw-full-eager"],
    # 4xH100, 2026-11-26, session 10: train.cudagraphs rows, whose pool only reserved memory shows (``peak``), and
    # tp=2 without sequence parallelism
    "2026-11-26-h100x4-nccl-graphs-memory": ["graphs-full/sw-full-eager-graphs", "graphs-none/sw-none-eager",
                                             "graphs-8b/sw-full-eager-graphs"],
    # 2xH100, 2026-11-26, session 12: the compiled loss-parallel rows again, with ``loss._TargetLogit`` (4 bytes per
    # logit fewer at the loss's peak; the rows before it that this estimate no longer bounds are left out above),
    # micro-batch 8 at tp=2, and Llama-3-8B at tp=2 with bf16 weights
    "2026-11-26-h100x2-loss": ["tp2/sw-none-compile-mb4", "tp2-mb8/sw-none-compile-mb8", "tp2-nosp/sw-none-compile-mb4",
                               "tp2-async/sw-none-compile-mb4-asynctp"],
    "2026-11-26-h100x2-mb8": ["tp2-mb8-async/sw-none-compile-mb8", "8b-tp2-bf16-noac/sw-none-compile-mb2",
                              "8b-tp2-bf16-full/sw-full-compile"],
    # 2xH100, 2026-11-26, session 14: dp_shard=2 with parallel.reshard_after_forward=auto (blocks kept gathered,
    # each record says so) and =true, Qwen2-1.5B and Llama-3-8B (bf16 weights)
    "2026-11-26-h100x2-reshard-auto": ["dp2-auto/sw-none-compile-mb4", "dp2-reshard/sw-none-compile-mb4",
                                       "8b-dp2-auto/sw-none-compile", "8b-dp2-reshard/sw-none-compile"],
    # 2xH100, 2026-11-26, session 15: units kept gathered through the micro-batches (the same peaks as before), Llama-3-8B
    # (bf16 weights) dp_shard=2 at 4 micro-batches per rank and tp=2; Qwen2-1.5B dp_shard=2 at 2 micro-batches of 4
    "2026-11-26-h100x2-keep-through-accumulation": ["8b-new/sw-none-compile", "15b-gb16-new/sw-none-compile-mb4"],
    "2026-11-26-h100x2-keep-through-accumulation-b": ["8b-new/sw-none-compile", "8b-tp2-new/sw-none-compile-mb2"],
    # 2xH200, 2026-11-27, session 20: Qwen2-1.5B cp=2 at 16k on packed rows, through dense masks (each layer's sdpa
    # keeps an additive copy) and through flex (grouped K/V kept as gathered)
    "2026-11-27-h200x2-cp-flex": ["cp2-mask/sw-none-compile", "cp2-flex/sw-none-compile"],
}
# bf16 master weights: rows named bf16 and those of these "folder:row-prefix"es (an empty prefix: the whole folder)
BF16_ROWS = ("2026-11-25-h100x2-cp:", "2026-11-26-h200x2-cp-32k:", "2026-11-26-h200x4-ring-cudagraphs:cp2-",
             "2026-11-26-h200x4-ring-cudagraphs:dp2-32k", "2026-11-26-h200x4-overlap-cp4:cp4-",
             "2026-11-26-h200x4-overlap-cp4:dp4-", "2026-11-26-h200x4-async-fused:",
             "2026-11-26-h200x4-llama8b-noac:tp2-sw", "2026-11-26-h200x4-llama8b-noac:dp2-sw",
             "2026-11-26-h200x4-fsdp-units:dp2-main", "2026-11-26-h200x4-keep-gathered:dp2-sw",
             "2026-11-26-h200x4-eager-cache:dp2-", "2026-11-26-h200x4-eager-cache:tp2-prof",
             "2026-11-26-h100x4-graphs-renewed:tp2-8b", "2026-11-26-h100x4-nccl-graphs-memory:graphs-8b",
             "2026-11-26-h100x2-reshard-auto:8b-", "2026-11-26-h100x2-keep-through-accumulation:8b-",
             "2026-11-26-h100x2-keep-through-accumulation-b:8b-")
SMOKE = RESULTS / "2026-11-25-h100x2-smoke-pass"
# benchmarks/gpu_archs.sh: every architecture on 1 GPU, at tp=2, at dp_shard=2 and at dp_shard=2 x tp=2; the
# mixtures of experts on 1 GPU compiled and eager in bf16, and eager in fp32 (with Llama; K/V repeated: shardwise.sdpa),
# and in fp32 on 2 GPUs at tp=2 and dp_shard=2, with their one-GPU twins at micro-batch 2
ARCHS = [RESULTS / name for name in ("2026-11-27-h200x2-archs", "2026-11-27-h200x2-archs-fsdp",
                                     "2026-11-28-h100x4-archs-2d", "2026-11-28-h100x4-archs-tp2-mlp2d",
                                     "2026-11-28-h100x4-archs-tp2-attn", "2026-11-29-h200x1-moe-archs",
                                     "2026-11-29-h200x1-olmoe-archs", "2026-11-29-h200x1-fp32-repeated-kv",
                                     "2026-11-29-h200x2-archs-tp2-moe", "2026-11-29-h200x2-moe-twin",
                                     "2026-11-29-h200x2-archs-dp2")]
LARGE_GIB, MAX_RATIO = 10, 1.35


def sweep_args(folder: str, key: str, r: dict) -> list[str]:
    """The ``shardwise plan`` arguments of one ``shardwise bench`` record."""
    layout = {"cp": 1, **r["layout"]}  # records from before context parallelism have no cp
    run = key.split("/")[0]  # the run's folder name says its bf16 weights, ring and kept blocks
    master = "bfloat16" if "bf16" in run or f"{folder}:{key}".startswith(BF16_ROWS) else "float32"
    ring = ["--parallel.cp_exchange=ring"] if "ring" in run else []
    packed = [f"--data.packing={bool(r.get('document_len'))}"]  # bench's rows: one document each, or packed
    kept = "keep" in run or r.get("reshard_after_forward") is False  # records before auto name it in the folder
    keep = [f"--parallel.reshard_after_forward={str(not kept).lower()}"]
    graphs = ["--train.cudagraphs=true"] if r.get("cudagraphs") else []
    graphs += [f"--model.packed_attention={r['packed_attention']}"] if r.get("packed_attention") else []
    return [f"--world-size={layout['world_size']}", f"--model.preset={r['preset']}", f"--model.dtype={master}",
            *(f"--parallel.{k}={layout[k]}" for k in ("dp_replicate", "dp_shard", "cp", "tp")),
            f"--parallel.sequence_parallel={r['sequence_parallel'] or layout['tp'] == 1}",
            f"--parallel.loss_parallel={r['loss_parallel'] or layout['tp'] == 1}", f"--train.dtype={r['dtype']}",
            f"--train.compile={str(r['compile']).lower()}",
            *(f"--train.{k}={r[k]}" for k in ("seq_len", "global_batch_size", "micro_batch_size",
                                              "activation_checkpointing")), *ring, *packed, *keep, *graphs]


def peak(record: dict) -> float:
    """A bench record's peak: allocated memory, but reserved with CUDA graphs, whose pool every replay reuses without
    allocating (bench resets the allocated peak after warmup, where the capture filled the pool)."""
    return record["peak_reserved_gib"] if record.get("cudagraphs") else record["peak_mem_gib"]


def measured_rows(work: Path) -> list[tuple[str, list[str], float]]:
    smoke_checks = pytest.importorskip("smoke_checks")  # benchmarks/ is on sys.path (below)
    rows = []
    for folder, keys in SWEEP_ROWS.items():
        records = json.loads((RESULTS / folder / "sweep.json").read_text())
        rows += [(f"{folder}:{key}", sweep_args(folder, key, records[key]), peak(records[key])) for key in keys]
    smoke_checks.write_configs(work)
    rows += [(f"{SMOKE.name}:{name}", args, gib) for name, args, gib in smoke_checks.measured_runs(SMOKE, work)]
    return rows + [(f"{archs.name}:{name}", args, gib)
                   for archs in ARCHS for name, args, gib in smoke_checks.measured_runs(archs, work, "archs")]


def test_memory_bounds_the_measured_peaks(tmp_path, capsys):
    """The plan's total is an upper bound of every peak measured on 2xH100, 2xH200 and 4xH200 (compiled and eager,
    FSDP, TP, CP all-gathered and round the ring, 8B at 8k to 128k tokens, fp32 and bf16 master weights, every
    architecture's plan file), and a tight one for the large runs: within 35%."""
    sys.path.insert(0, str(RESULTS.parent))
    loose, estimates = [], {}
    for label, args, peak in measured_rows(tmp_path):
        if tuple(args) not in estimates:  # runs repeated in several calls are planned once
            _, plan = plan_json(capsys, *args, "--device-memory-gib=79.1")
            estimates[tuple(args)] = plan["memory_bytes"]["total"] / 2**30
        estimate = estimates[tuple(args)]
        assert estimate >= peak, f"{label}: estimate {estimate:.2f} GiB < measured peak {peak:.2f} GiB"
        if peak > LARGE_GIB and estimate > MAX_RATIO * peak:
            loose.append(f"{label}: {estimate:.2f} GiB for {peak:.2f}")
    assert not loose


def test_fsdp_traffic_gathers_kept_blocks_once_per_step():
    """The plan's FSDP all-gathers are the run's (``test_kept_blocks_stay_gathered_through_the_micro_batches``): with
    blocks kept gathered every unit once per step; else per micro-batch the root and the last block once (for
    forward) and every other block twice."""
    from shardwise.estimate import fsdp_comm, ring_bytes

    units = [10_000, 2_000, 2_000, 2_000]  # the root, then three blocks
    gather = {n: ring_bytes("all_gather_into_tensor", n * 2 / 2, 2) for n in set(units)}
    kept = fsdp_comm(units, shard=2, replicate=1, param_bytes=2, micro_batches=4, reshard_after_forward=False)
    assert kept["all_gather"] == gather[10_000] + 3 * gather[2_000]
    freed = fsdp_comm(units, shard=2, replicate=1, param_bytes=2, micro_batches=4)
    assert freed["all_gather"] == 4 * (gather[10_000] + gather[2_000] + 2 * 2 * gather[2_000])
    assert freed["reduce_scatter"] == 4 * ring_bytes("reduce_scatter_tensor", sum(units) * 4, 2)


def test_gpu_only_settings_plan_on_cpu(capsys):
    """A GPU run's settings that refuse CPU (flex attention, async TP, CUDA graphs) still plan here, with the same
    estimate as without them where they change nothing plan counts: flex moves no parameter or collective, and
    only spares what sdpa keeps for backward with a dense mask: each layer's additive copy of it, and K/V repeated to
    the query heads (transformers repeats them where sdpa gets a mask)."""
    common = ("--parallel.tp=2", "--world-size=2", "--train.seq_len=256", "--device-memory-gib=80",
              "--train.global_batch_size=2", "--train.micro_batch_size=1")
    code, flex = plan_json(capsys, *common, "--model.packed_attention=flex", "--parallel.async_tp=true")
    _, mask = plan_json(capsys, *common, "--model.packed_attention=mask")
    assert code == 0 and flex["ok"]
    bias = 4 * 256 * 256 * 2  # tiny-qwen2's 4 layers, one row of 256 tokens by 256 keys, bf16 (planned for GPUs)
    repeated = 4 * 256 * 2 * (128 - 64) * 2 // 2  # K and V at 4 query heads' width instead of 2 KV heads', tp=2
    assert mask["memory_bytes"].pop("activations") - flex["memory_bytes"].pop("activations") == bias + repeated
    drop = ("total", "phases")
    assert {k: v for k, v in mask["memory_bytes"].items() if k not in drop} == \
        {k: v for k, v in flex["memory_bytes"].items() if k not in drop}


def test_names_the_layout_without_tp_where_it_fits(capsys):
    """A TP run's plan also plans FSDP alone on the same ranks, and names its setting where that fits with headroom
    and checkpoints no more than the TP run's recommendation (FSDP alone measured up to 1.74x TP where both fit);
    the named flags plan to the total the hint gives. Not without TP, nor without a device budget, nor where FSDP
    alone would need checkpointing the TP run does not."""
    args = ["--model.preset=tiny-llama", "--world-size=2", "--train.seq_len=2048", "--train.global_batch_size=8"]
    _, roomy = plan_json(capsys, *args, "--parallel.tp=2", "--device-memory-gib=80")
    hint = roomy["without_tp"]
    assert hint["flags"].startswith("--parallel.tp=1 --train.activation_checkpointing=none")
    assert hint["mesh"]["dp_shard"] == 2 and hint["total_bytes"] <= RECOMMEND_HEADROOM * 80 * 2**30
    _, plain = plan_json(capsys, *args, *hint["flags"].split(), "--device-memory-gib=80")
    assert plain["memory_bytes"]["total"] == hint["total_bytes"] and plain["without_tp"] is None
    assert main(["plan", *args, "--parallel.tp=2", "--device-memory-gib=80"]) == 0
    assert f"without TP it fits too: {hint['flags']}" in capsys.readouterr().out
    _, no_budget = plan_json(capsys, *args, "--parallel.tp=2")
    assert no_budget["without_tp"] is None
    none_mb1 = ["--train.activation_checkpointing=none", "--train.micro_batch_size=1"]
    _, tp_least = plan_json(capsys, *args, "--parallel.tp=2", *none_mb1, "--device-memory-gib=80")
    _, fsdp_least = plan_json(capsys, *args, "--parallel.tp=1", *none_mb1, "--device-memory-gib=80")
    tp_total, fsdp_total = tp_least["memory_bytes"]["total"], fsdp_least["memory_bytes"]["total"]
    assert tp_total < fsdp_total  # sequence parallelism shards the activations FSDP alone keeps whole
    between = (tp_total + fsdp_total) / 2 / RECOMMEND_HEADROOM / 2**30
    _, tight = plan_json(capsys, *args, "--parallel.tp=2", f"--device-memory-gib={between}")
    assert tight["recommended"]["activation_checkpointing"] == "none" and tight["without_tp"] is None


def test_no_layout_without_tp_that_fits_only_tightly(monkeypatch):
    """FSDP alone planned above 90% of the device is not offered beside a TP run (the allocator may need more)."""
    option = {"activation_checkpointing": "none", "micro_batch_size": 2, "reshard_after_forward": False,
              "total_bytes": 70 * 2**30}
    report = {"mesh": {"tp": 2}, "device_memory_gib": 80.0, "recommended": {**option, "tight": False}}
    cfg = load_config(None, {"parallel.tp": "2"})
    for tight in (False, True):
        plain = {"checks": [], "mesh": {"tp": 1, "dp_shard": 2}, "recommended": {**option, "tight": tight}}
        monkeypatch.setattr(plan, "make_plan", lambda *args, plain=plain: plain)
        hint = plan.without_tp(cfg, 2, report)
        assert (hint is None) == tight


@pytest.mark.parametrize("flag, line", [("--world-size=0", "--world-size=0 must be >= 1"),
                                        ("--device-memory-gib=-5", "--device-memory-gib=-5.0 must be > 0")])
def test_plans_own_flags_out_of_range_get_one_line(flag, line, capfd):
    """A world of no devices, or a device of no memory: one line and exit 2, not a plan that fails every check."""
    assert main(["plan", flag]) == 2
    assert [x for x in capfd.readouterr().err.splitlines() if x.strip()] == [f"shardwise: error: {line}"]


def test_auto_attends_per_sequence_where_that_runs_and_fits(capsys):
    """``parallel.tp_attention=auto`` plans attention per sequence where each TP rank holds whole rows
    and that plan fits within the recommendation's headroom of the device, else split by heads; with no device to
    plan for, by heads. The report is then the chosen layout's own, and says why."""
    args = ["--model.preset=qwen2-0.5b", "--world-size=2", "--parallel.tp=2", "--train.seq_len=2048",
            "--train.global_batch_size=8", "--train.activation_checkpointing=none", "--parallel.tp_attention=auto"]
    _, seq = plan_json(capsys, *args, "--parallel.tp_attention=sequences", "--device-memory-gib=80")
    _, heads = plan_json(capsys, *args, "--parallel.tp_attention=heads", "--device-memory-gib=80")
    _, auto = plan_json(capsys, *args, "--device-memory-gib=80")
    assert (auto["tp_attention"], auto["memory_bytes"], auto["comm_bytes"], auto["heads"]) == (
        "sequences", seq["memory_bytes"], seq["comm_bytes"], seq["heads"])
    assert auto["tp_attention_why"] == "fits within 90% of 80 GiB"
    assert seq["comm_bytes"]["tp"] != heads["comm_bytes"]["tp"]
    assert "tp_attention_why" not in seq and seq["tp_attention"] == "sequences" and heads["tp_attention"] == "heads"
    just_under = seq["memory_bytes"]["total"] / RECOMMEND_HEADROOM / 2**30 * 0.999
    _, tight = plan_json(capsys, *args, f"--device-memory-gib={just_under}")
    assert tight["tp_attention"] == "heads" and tight["heads"] == heads["heads"]
    assert tight["tp_attention_why"].startswith("per sequence would need about ")
    _, one = plan_json(capsys, *args, "--train.micro_batch_size=1", "--device-memory-gib=80")
    assert (one["tp_attention"], one["tp_attention_why"]) == (
        "heads", "micro-batches of 1 sequence, not a multiple of parallel.tp=2")
    rec = one["recommended"]  # planned in the layout auto gives its setting: set, it is planned the same
    _, followed = plan_json(capsys, *args, f"--train.micro_batch_size={rec['micro_batch_size']}",
                            "--device-memory-gib=80")
    assert (followed["tp_attention"], followed["memory_bytes"]["total"]) == ("sequences", rec["total_bytes"])
    _, no_sp = plan_json(capsys, *args, "--parallel.sequence_parallel=false", "--device-memory-gib=80")
    assert no_sp["tp_attention"] == "heads" and "sequence_parallel=true" in no_sp["tp_attention_why"]
    _, nowhere = plan_json(capsys, *args)
    assert (nowhere["tp_attention"], nowhere["tp_attention_why"]) == ("heads", "no device memory to plan for")
    _, no_tp = plan_json(capsys, *args[:2], "--parallel.tp=1", *args[3:], "--device-memory-gib=80")
    assert no_tp["tp_attention"] is None and no_tp["tp_attention_why"] is None
    assert main(["plan", *args, "--device-memory-gib=80"]) == 0
    assert "  attention: per sequence (parallel.tp_attention=auto: fits within 90% of 80 GiB)" in (
        capsys.readouterr().out.splitlines())


@pytest.mark.parametrize("preset,width", [("tiny-mixtral", 2 * 352), ("tiny-olmoe", 2 * 64), ("tiny-qwen3-moe", 2 * 64),
                                          ("tiny-qwen2-moe", 352), ("tiny-llama", 352)])
def test_mlp_width_is_a_tokens_routed_experts_where_wider(preset, width):
    """The MLP activations a token keeps: Mixtral's (OLMoE's) 2 routed experts, each ``intermediate_size`` wide;
    Qwen3-MoE's 2 of ``moe_intermediate_size`` 64 (its ``intermediate_size`` 352 is no block's width); Qwen2-MoE's
    dense layer, wider than its 2 routed experts and shared one (2 * 64 + 176); a dense MLP."""
    from shardwise.estimate import mlp_width

    assert mlp_width(hf_config(ModelConfig(preset=preset))) == width
