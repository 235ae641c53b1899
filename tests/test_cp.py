"""Context parallelism: which tokens each rank holds, which attention and lengths it refuses (in one process), that
whole causal rows attend without a mask as in one process, and that compiled blocks keep the K/V all-gather inside
one graph (in two or four).

Losses, logits and gradients of real runs are proven by the CP layouts of ``test_parallelize.py``
against one process, and each rank's mask by ``test_model.py``.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compiled_step, torchrun

from shardwise.config import ConfigError, ModelConfig, load_config
from shardwise.cp import configured_attention, local_indices, sequence_order, token_order
from shardwise.model import build_meta_model, hf_config
from shardwise.parallelize import check_divisibility


@pytest.mark.parametrize("cp", [1, 2, 4])
def test_each_rank_holds_a_front_chunk_and_its_mirror(cp):
    seq = 8 * cp
    order = sequence_order(seq, cp)
    assert sorted(order.tolist()) == list(range(seq))  # every token on exactly one rank
    chunks = torch.arange(seq).chunk(2 * cp)
    for rank in range(cp):
        assert torch.equal(local_indices(seq, cp, rank), torch.cat([chunks[rank], chunks[2 * cp - 1 - rank]]))


@pytest.mark.parametrize("cp", [1, 2, 4])
def test_token_order_undoes_the_ranks_order(cp):
    """Gathered rows (in ``sequence_order``) come back in token order along any dimension, as the CP attention
    (dim 2 of K/V) and ``gather_sequence`` (dim 0) use it."""
    order = sequence_order(24, cp)
    assert torch.equal(token_order(order, cp, 0), torch.arange(24))
    heads = order.view(1, 1, 24, 1).expand(2, 3, 24, 5)
    assert torch.equal(token_order(heads, cp, 2), torch.arange(24).view(1, 1, 24, 1).expand(2, 3, 24, 5))


@pytest.mark.parametrize("cp", [2, 4])
def test_causal_work_is_balanced(cp):
    """Every rank's queries have as many causal (query, key) pairs as every other's; contiguous pieces would not."""
    seq = 8 * cp
    pairs = [int((local_indices(seq, cp, r) + 1).sum()) for r in range(cp)]  # query i sees keys 0..i
    assert len(set(pairs)) == 1
    contiguous = [int((torch.arange(seq).chunk(cp)[r] + 1).sum()) for r in range(cp)]
    assert len(set(contiguous)) == cp


def test_attention_that_cannot_take_the_mask_is_refused():
    """Flash and flex attention take no mask of local queries x all keys: one line naming the fix."""
    cfg = load_config(None, {"parallel.cp": "2", "model.attn_implementation": "flex_attention"})
    with pytest.raises(ConfigError, match=r"^model.attn_implementation=flex_attention cannot attend across the chunks "
                                          r"of parallel.cp=2 .*; use sdpa or eager, or parallel.cp=1$"):
        check_divisibility(hf_config(cfg.model), cfg, 1)
    check_divisibility(hf_config(cfg.model), load_config(None, {"model.attn_implementation": "flex_attention"}), 1)


@pytest.mark.parametrize("seq_len,cp,tp,fix", [(31, 2, 1, 32), (36, 2, 2, 40), (80, 4, 4, 96)])
def test_a_length_that_does_not_cut_into_equal_chunks_is_refused(seq_len, cp, tp, fix):
    """Rows cut into 2*cp chunks of tp shards, unpadded: one line naming the next length that does; cp=1 pads."""
    cfg = load_config(None, {"parallel.cp": str(cp), "parallel.tp": str(tp), "train.seq_len": str(seq_len)})
    with pytest.raises(ConfigError, match=rf"^train.seq_len={seq_len} is not divisible by 2\*parallel.cp\*parallel.tp="
                                          rf"{2 * cp * tp} \(.*\); use train.seq_len={fix}$"):
        check_divisibility(hf_config(cfg.model), cfg, tp)
    check_divisibility(hf_config(cfg.model), load_config(None, {"train.seq_len": str(fix), "parallel.cp": str(cp),
                                                                "parallel.tp": str(tp)}), tp)
    check_divisibility(hf_config(cfg.model), load_config(None, {"train.seq_len": str(seq_len), "parallel.tp": "1"}), 1)


def test_eager_is_the_architectures_own():
    """Gemma 2's eager attention soft-caps its scores; CP calls that function, not a generic one."""
    from transformers.models.gemma2 import modeling_gemma2
    from transformers.models.llama import modeling_llama

    gemma = build_meta_model(hf_config(ModelConfig(preset="tiny-gemma2", attn_implementation="eager")))
    assert configured_attention(gemma.layers[0].self_attn, "eager") is modeling_gemma2.eager_attention_forward
    llama = build_meta_model(hf_config(ModelConfig(preset="tiny-llama")))
    assert configured_attention(llama.layers[0].self_attn, "eager") is modeling_llama.eager_attention_forward


def test_compiled_cp_blocks_are_one_graph_with_eager_gradients(tmp_path):
    """cp=2 with Gemma 2's eager attention (soft-capping, sliding windows) and full checkpointing: every block
    traces as one graph, the K/V all-gather inside, and gives the eager loss and gradients."""
    compiled_step(tmp_path, {"model.preset": "tiny-gemma2", "model.attn_implementation": "eager", "parallel.cp": 2,
                             "parallel.tp": 1, "parallel.dp_shard": 1, "train.activation_checkpointing": "full",
                             "train.seq_len": 64, "train.global_batch_size": 2, "train.micro_batch_size": 2,
                             "train.dtype": "float32", "data.max_bytes": 100_000, "output.progress": False})


@pytest.mark.parametrize("cp", [2, 4])
def test_whole_rows_attend_without_a_mask_as_in_one_process(tmp_path, cp):
    """Rows without a document boundary take the chunk-pair path (keys back in token order, each chunk over its
    key prefix, bottom-right causal) or, with ``cp_exchange=ring``, the ring (K/V blocks passed on, merged by
    log-sum-exp on the CPU's flash kernel); each, the same compiled as one graph (collectives inside) and the
    masked path give one process's causal attention and Q/K/V gradients on every rank, with grouped K/V heads
    (fp32, relative to the largest value)."""
    out = tmp_path / "results.pt"
    batch, heads, kv_heads, head_dim, chunk = shape = [2, 4, 2, 16, 8]
    torchrun(cp, "_cp_attention_worker.py", "--overrides", json.dumps({"shape": shape}), "--out", str(out))
    result = torch.load(out)
    assert result["kernel"] == "cpu"  # the ring ran on its kernel, not the all-gather fallback
    for rank, paths in enumerate(result["ranks"]):
        assert set(paths) == {"chunk_pair", "chunk_pair_compiled", "ring", "ring_compiled", "masked"}
        for path, errors in paths.items():
            assert max(errors) < 1e-5, (rank, path, errors)
    # What backward keeps (estimate's kv term): all-gathered, every rank's K and V repeated to the query heads;
    # round the ring, only this rank's own Q, K, V (compiled, K/V twice), its output and log-sum-exp (fp32 here).
    local, lse = batch * 2 * chunk * head_dim * 4, batch * heads * 2 * chunk * 4
    assert result["saved"]["chunk_pair"] >= 2 * cp * heads * local
    assert result["saved"]["ring"] <= (2 * heads + 2 * kv_heads) * local + lse
    assert result["saved"]["ring_compiled"] <= (2 * heads + 4 * kv_heads) * local + lse
