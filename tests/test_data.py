from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from shardwise.config import ConfigError, DataConfig
from shardwise.data import (
    Batch,
    StepBatches,
    TokenWindows,
    byte_tokenizer,
    load_tokens,
    pad_to_multiple,
)


def test_byte_tokenizer_is_bytes_and_round_trips(tmp_path):
    tok = byte_tokenizer()
    text = "héllo\n  wörld\t"
    assert tok(text)["input_ids"] == list(text.encode()) and tok.eos_token_id == 256 and len(tok) == 257
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.decode(again(text)["input_ids"]) == text


def test_stdlib_corpus_is_deterministic():
    a = load_tokens(DataConfig(max_bytes=50_000), byte_tokenizer())
    b = load_tokens(DataConfig(max_bytes=50_000), byte_tokenizer())
    assert len(a) >= 50_000 and torch.equal(a, b)


def test_global_batch_is_the_same_on_every_layout():
    windows = TokenWindows(torch.arange(10_000), seq_len=16, seed=3)
    whole = torch.cat([b.input_ids for b in StepBatches(windows, 8, 8, 0, 1)(step=2)])
    split = [b.input_ids for r in range(4) for b in StepBatches(windows, 8, 1, r, 4)(step=2)]
    assert torch.equal(whole, torch.cat(split))
    assert not torch.equal(whole, torch.cat([b.input_ids for b in StepBatches(windows, 8, 8, 0, 1)(step=3)]))


def test_indivisible_batch_names_the_keys():
    windows = TokenWindows(torch.arange(1000), seq_len=8, seed=0)
    with pytest.raises(ConfigError, match="train.global_batch_size=6 must be a multiple of dp"):
        StepBatches(windows, 6, 2, 0, 2)


def test_pad_to_multiple_ignores_padding_and_continues_positions():
    ids = torch.arange(10).view(2, 5)
    batch = pad_to_multiple(Batch(ids, ids + 1, torch.arange(5).expand(2, 5)), 4)
    assert batch.input_ids.shape == (2, 8)
    assert (batch.labels[:, 5:] == -100).all()
    assert batch.position_ids[0].tolist() == list(range(8))


def test_empty_or_missing_data(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    with pytest.raises(ConfigError, match="holds no text"):
        load_tokens(DataConfig(path=str(empty)), byte_tokenizer())
    with pytest.raises(ConfigError, match="does not exist"):
        load_tokens(DataConfig(path=str(tmp_path / "none.txt")), byte_tokenizer())
    with pytest.raises(ConfigError, match="fewer than train.seq_len"):
        TokenWindows(torch.arange(5), seq_len=8, seed=0)
