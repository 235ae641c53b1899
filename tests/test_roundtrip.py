"""A tokenizer that loses text is refused before training; harmless normalization is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from shardwise.config import ConfigError, load_config
from shardwise.data import build_tokenizer
from shardwise.roundtrip import canonical, check_round_trip

WORDS = ["[UNK]", "<|endoftext|>", "alpha", "bravo", "zulu", "Charlie", "charlie", "a", "b", "l", "p", "h"]
TEXTS = ["alpha bravo zulu", "Charlie  alpha\n\nbravo", "zulu"]


def word_level(folder: Path, lowercase: bool = False) -> Path:
    """A word-level tokenizer saved as ``PreTrainedTokenizerFast`` (which loads back as itself)."""
    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model.decoder = decoders.WordPiece()
    if lowercase:
        model.normalizer = normalizers.Lowercase()
    PreTrainedTokenizerFast(tokenizer_object=model, eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


def check(tokenizer_dir: Path, data: Path) -> None:
    cfg = load_config(None, {"data.tokenizer": str(tokenizer_dir), "data.path": str(data),
                             "data.cache_dir": str(data.parent / "cache")})
    check_round_trip(cfg, build_tokenizer(cfg))


def test_word_level_tokenizer_in_a_qwen2_folder_is_refused(tmp_path, data):
    """transformers 5 loads it as Qwen2Tokenizer, which keeps the vocabulary but not the word-level model."""
    folder = word_level(tmp_path / "tok")
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ConfigError) as err:
        check(folder, data)
    assert str(err.value) == (
        f"data.tokenizer={folder}: its tokenizer (Qwen2Tokenizer) does not give back the text it encodes "
        "('alpha bravo zulu' decodes as 'alphabal'), so training would lose text; set data.tokenizer to a "
        "tokenizer that round-trips, e.g. the one the model was trained with")


def test_the_same_tokenizer_loaded_as_itself_round_trips(tmp_path, data):
    """Its decoder joins words with single spaces: whitespace is normalization, not loss."""
    check(word_level(tmp_path / "tok"), data)


def test_case_folding_is_loss(tmp_path, data):
    with pytest.raises(ConfigError, match=r"\('Charlie alpha bravo' decodes as 'charlie alpha bravo'\)"):
        check(word_level(tmp_path / "tok", lowercase=True), data)


def test_canonical_form_keeps_words_and_drops_whitespace_and_compatibility_forms():
    assert canonical("  ﬁne\u3000ＡＢ\n\nc ") == "fine AB c"
    assert canonical("Word") != canonical("word")
