"""Refuse a tokenizer that loses text, before training on what is left of it.

transformers 5 loads the tokenizer of any folder whose config says ``qwen2`` as ``Qwen2Tokenizer``,
keeping only the vocabulary, merges and post-processor of its ``tokenizer.json``: a word-level
tokenizer saved there turns "alpha bravo zulu" into one token or none, and training would run on
what is left without a warning. So before training, ``check_round_trip`` encodes the raw text of a
sample of records (``shardwise.corpus`` reads them) and decodes it again: the text must come back.

"Come back" allows what tokenizers do on purpose and what changes no word: Unicode compatibility
normalization (NFKC, which SentencePiece models apply: full-width letters, ligatures) and
whitespace (a prefix space added or stripped, runs of spaces and newlines merged, as whitespace
pre-tokenizers and SentencePiece's "▁" do), after the decoding clean-up the tokenizer's own
config asks for (``clean_up_tokenization_spaces``: no space before punctuation). Words, their order, case and punctuation must survive:
a tokenizer that drops or replaces them (unknown tokens, lowercasing) changes what a causal LM
learns and generates, which is data loss, not normalization.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

from shardwise.config import Config, ConfigError, DataConfig
from shardwise.corpus import data_files, document_kind, read_records

SAMPLE_RECORDS = 16  # spread evenly over the data
MAX_CHARS = 2000  # of each text: enough to meet most of a tokenizer's rules, cheap in every rank
CONTEXT = 30  # characters shown around the first difference


def sample_texts(cfg: DataConfig) -> list[str]:
    """The raw strings of up to ``SAMPLE_RECORDS`` records: texts, prompts and completions, or message contents."""
    builder, files = data_files(cfg.path) if cfg.path else ("", [])
    records = read_records(cfg, builder, files, Path(cfg.cache_dir or datasets.config.HF_DATASETS_CACHE))
    kind = document_kind(records.features, cfg.path or "<stdlib corpus>")
    picks = sorted(set(np.linspace(0, len(records) - 1, min(SAMPLE_RECORDS, len(records))).astype(int).tolist()))
    texts = []
    for record in records.select(picks):
        if kind == "chat":
            texts += [m.get("content") for m in record["messages"]]
        else:
            texts += [record[name] for name in (("prompt", "completion") if kind == "completion" else ("text",))]
    return [t[:MAX_CHARS] for t in texts if t and t.strip()]


def canonical(text: str) -> str:
    """``text`` as far as a lossless tokenizer must keep it: NFKC, whitespace runs as one space, no ends."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _difference(want: str, got: str) -> tuple[str, str]:
    """Both strings around their first difference."""
    at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    start = max(0, at - CONTEXT)
    return want[start : at + CONTEXT], got[start : at + CONTEXT]


def check_round_trip(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> None:
    """One line naming ``data.tokenizer`` or ``model.path`` if decoding what the tokenizer encodes loses text.

    The built-in byte tokenizer (neither key set) is lossless by construction and not checked.
    """
    source = cfg.data.tokenizer or cfg.model.path
    if not source:
        return
    key = "data.tokenizer" if cfg.data.tokenizer else "model.path"
    for text in sample_texts(cfg.data):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        got = tokenizer.decode(ids, skip_special_tokens=False)  # with the tokenizer's own space clean-up
        if canonical(got) != canonical(text):
            want, got = _difference(canonical(text), canonical(got))
            raise ConfigError(f"{key}={source}: its tokenizer ({type(tokenizer).__name__}) does not give back the text "
                              f"it encodes ({want!r} decodes as {got!r}), so training would lose text; set "
                              "data.tokenizer to a tokenizer that round-trips, e.g. the one the model was trained with")
