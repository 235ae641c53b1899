"""``RowPlan``: the all-to-all that regroups a ``Shard(0)`` weight into the rows each rank computes with.

Every rank's plan is played out in one process (what each sends to whom, what each receives) and
what arrives is compared with the rows Megatron gives that rank, built independently with
``torch.chunk`` per section: ``n / tp`` whole heads of every section of ``n`` heads, or, with
fewer heads than ranks, head ``rank // (tp / n)``. The distributed parity tests run the same
plans through real collectives, backward included.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_same_steps, compiled_step, torchrun

from shardwise.tp import RowPlan


def megatron_rows(weight: torch.Tensor, heads: tuple[int, ...], rows_per_head: int, tp: int, rank: int) -> torch.Tensor:
    sections = weight.split([n * rows_per_head for n in heads])
    return torch.cat([s.chunk(tp)[rank] if n >= tp else s.chunk(n)[rank // (tp // n)] for s, n in zip(sections, heads)])


def delivered(weight: torch.Tensor, heads: tuple[int, ...], rows_per_head: int, tp: int) -> list[torch.Tensor]:
    """What each rank computes with: its own block if no rank needs regrouping, else what the all-to-all brings."""
    blocks = weight.chunk(tp)
    plans = [RowPlan.of(heads, rows_per_head, tp, r) for r in range(tp)]
    if plans[0] is None:
        assert all(p is None for p in plans), "ranks disagree on whether to call the collective"
        return list(blocks)
    sent = [torch.cat([blocks[s][a:b] for a, b in plans[s].send]).split(list(plans[s].send_sizes)) for s in range(tp)]
    for r in range(tp):
        assert [sent[s][r].shape[0] for s in range(tp)] == list(plans[r].recv_sizes)
    return [torch.cat([sent[s][r] for s in range(tp)]) for r in range(tp)]


@pytest.mark.parametrize("heads,rows_per_head,tp", [
    ((8,), 4, 4),  # q_proj: plain column split, no collective
    ((2,), 4, 4),  # k_proj with 2 KV heads at tp=4: each head on 2 ranks
    ((1,), 8, 4),  # one KV head on all 4 ranks
    ((4, 2, 2), 4, 2),  # Phi-3 qkv_proj, KV heads split
    ((4, 2, 2), 4, 4),  # Phi-3 qkv_proj, KV heads replicated
    ((8, 1, 1), 8, 8),  # multi-query qkv at tp=8
    ((12, 12), 1, 4),  # gate_up_proj
])
def test_each_rank_gets_megatrons_rows(heads, rows_per_head, tp):
    weight = torch.arange(sum(heads) * rows_per_head)
    for rank, rows in enumerate(delivered(weight, heads, rows_per_head, tp)):
        assert torch.equal(rows, megatron_rows(weight, heads, rows_per_head, tp, rank)), f"rank {rank}"


def test_plain_split_needs_no_collective():
    assert RowPlan.of((8,), 4, 4, 0) is None
    assert RowPlan.of((4, 2, 2), 4, 2, 0) is not None  # a fused projection always regroups


def test_eager_tp_reads_cached_copies_with_per_read_numerics(tmp_path):
    """Eager TP without FSDP (tp=2, bf16 compute on fp32 master weights, tied embedding, full checkpointing, 4
    micro-batches): each module reads one cached bf16 copy of a parameter until an optimizer step changes it (the
    tied lm_head its own), and two steps give bit for bit the gradients and weights of casting on every read."""
    out = tmp_path / "results.pt"
    overrides = {"model.preset": "tiny-qwen2", "model.dtype": "float32", "train.dtype": "bfloat16",
                 "parallel.tp": 2, "parallel.dp_shard": 1, "train.activation_checkpointing": "full",
                 "train.seq_len": 32, "train.global_batch_size": 4, "train.micro_batch_size": 1,
                 "train.compile": "false", "output.progress": False}
    torchrun(2, "_param_cache_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    cached, per_read = (r := torch.load(out))["cached"], r["per_read"]
    assert cached["dtype"] == torch.bfloat16
    assert cached["reads_agree"] and cached["tied_reads_differ"] and cached["renewed"]
    assert not per_read["reads_agree"]
    assert_same_steps(cached, per_read)


def _compiled_tp2_step(tmp_path, micro_batch: int, fuse: bool = False, **extra: str) -> dict:
    """``_compile_worker``'s compiled and eager tp=2 step of tiny-llama (fp32, sequence parallelism, ``extra``
    overrides), checked for one graph without breaks and for the eager loss and gradients; its results."""
    return compiled_step(tmp_path, {"model.preset": "tiny-llama", "parallel.tp": 2, "parallel.dp_shard": 1,
                                    "train.activation_checkpointing": "none", "train.seq_len": 32,
                                    "train.global_batch_size": micro_batch, "train.micro_batch_size": micro_batch,
                                    "train.dtype": "float32", "output.progress": False, "fuse": fuse, **extra})


@pytest.mark.parametrize("micro_batch, readers", [(2, [2, 3]), (1, [0, 2])])
def test_all_gathers_feed_their_matmuls_directly(tmp_path, micro_batch, readers):
    """Compiled tp=2 with sequence parallelism: in each block's forward graph the MLP's all-gather is read by the
    gate and up matmuls as it is, and attention's by q, k and v where each rank holds whole sequences (a batch of
    2), the only forms inductor's async-TP pass pipelines (a leading 1 in between left every forward all-gather
    unpipelined on GPUs, BENCHMARKS.md session 26); a batch of 1 is split mid-sequence, and attention's gathered
    tokens are viewed to (batch, seq) first. The compiled step gives the eager loss and gradients."""
    r = _compiled_tp2_step(tmp_path, micro_batch)
    assert sorted(r["gather_readers"]) == readers


def test_compiled_blocks_merge_projections_that_share_an_input(tmp_path):
    """``shardwise.fuse``'s pass over a compiled tp=2 block's graphs (as inductor's partitioner leaves them): q/k/v
    become one matmul and gate/up another (tiny-llama's are all narrow), each forward all-gather is read by one
    matmul (async TP's form), the backward's input gradients and weight gradients merge alike (7 -> 4 forward
    matmuls, 14 -> 8 backward), and the step gives the eager loss and gradients."""
    r = _compiled_tp2_step(tmp_path, 2, fuse=True)
    assert r["gather_readers"] == [1, 1]
    assert r["matmuls"] == {"forward": [4], "backward": [8]}


def test_attention_per_sequence_compiles_with_one_gather_per_block(tmp_path):
    """Compiled tp=2 with ``parallel.tp_attention=sequences`` (a batch of 2: one whole row per rank): one graph
    without breaks, the eager loss and gradients, and in each block's forward a single all-gather, the MLP's, read
    by gate and up as it is: attention's input is this rank's rows, gathered by no one."""
    r = _compiled_tp2_step(tmp_path, 2, **{"parallel.tp_attention": "sequences"})
    assert r["gather_readers"] == [2]
