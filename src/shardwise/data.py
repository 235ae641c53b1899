"""Token data and its deterministic split over steps, DP ranks and micro-batches.

Sample ``j`` of the run is fixed by ``train.seed`` alone. Step ``s`` takes samples
``s*G .. s*G+G-1`` (``G = train.global_batch_size``); DP rank ``r`` takes the ``r``-th
contiguous ``G/dp`` of them, cut into micro-batches. Every layout therefore sees the same
global batch at every step, which is what makes loss curves layout-invariant.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from shardwise.config import Config, ConfigError, DataConfig
from shardwise.loss import IGNORE_INDEX
from shardwise.model import hf_config

EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which byte-level models expect."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(extra)}}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """UTF-8 bytes as ids 0..255 plus ``<|endoftext|>`` = 256, as a real HF tokenizer.

    Being an ordinary ``tokenizers`` model, it is saved with exported checkpoints and loads back
    through ``AutoTokenizer``, so presets and real models share one data path.
    """
    chars = _bytes_to_unicode()
    model = Tokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    model.decoder = decoders.ByteLevel()
    model.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(tokenizer_object=model, eos_token=EOS, pad_token=EOS)


def build_tokenizer(cfg: Config) -> PreTrainedTokenizerBase:
    """``data.tokenizer``, else the tokenizer of ``model.path``, else the built-in byte tokenizer.

    Its ids must fit the model's embedding: a larger tokenizer would index past it mid-run.
    """
    source = cfg.data.tokenizer or cfg.model.path
    key = "data.tokenizer" if cfg.data.tokenizer else "model.path"
    if not source:
        tokenizer = byte_tokenizer()
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{key}={source}: no loadable tokenizer there ({type(err).__name__}); "
                              "set data.tokenizer to a folder with tokenizer.json") from None
    vocab = hf_config(cfg.model).vocab_size
    if len(tokenizer) > vocab:
        label = f"{key}={source}" if source else "the built-in byte tokenizer"
        raise ConfigError(f"{label}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                          f"{vocab}; set data.tokenizer to the model's own tokenizer")
    return tokenizer


def stdlib_corpus(max_bytes: int) -> list[str]:
    """Python's own standard-library sources, one document per file, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, size = [], 0
    for path in sorted(root.glob("*.py")):
        docs.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(docs[-1])
        if size >= max_bytes:
            break
    return docs


def load_tokens(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """The token stream of ``data.path`` (a text file) or of the built-in corpus, documents ended by EOS."""
    if cfg.path:
        path = Path(cfg.path)
        if not path.is_file():
            raise ConfigError(f"data.path={cfg.path} does not exist; give a text file or leave it empty")
        docs = [path.read_text(encoding="utf-8", errors="replace")[: cfg.max_bytes]]
    else:
        docs = stdlib_corpus(cfg.max_bytes)
    if not any(d.strip() for d in docs):
        raise ConfigError(f"data.path={cfg.path or '<stdlib>'} holds no text; give a non-empty file")
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    return torch.tensor([t for ids in encoded for t in (*ids, tokenizer.eos_token_id)], dtype=torch.long)


@dataclass
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.input_ids, self.labels, self.position_ids)))


def pad_to_multiple(batch: Batch, multiple: int) -> Batch:
    """Pad the sequence to a multiple of ``multiple`` (the TP degree) so sequence shards are even.

    Padding labels are ignored and padded positions continue the sequence, so causal attention
    leaves every real token's output unchanged.
    """
    seq = batch.input_ids.shape[1]
    extra = (-seq) % multiple
    if not extra:
        return batch
    b = batch.input_ids.shape[0]
    pos_tail = batch.position_ids[:, -1:] + torch.arange(1, extra + 1)
    return Batch(
        torch.cat([batch.input_ids, batch.input_ids.new_zeros(b, extra)], dim=1),
        torch.cat([batch.labels, batch.labels.new_full((b, extra), IGNORE_INDEX)], dim=1),
        torch.cat([batch.position_ids, pos_tail], dim=1),
    )


class TokenWindows:
    """Fixed-length windows of a token stream, in a seeded random order."""

    def __init__(self, tokens: torch.Tensor, seq_len: int, seed: int):
        self.tokens, self.seq_len = tokens, seq_len
        count = (len(tokens) - 1) // seq_len
        if count < 1:
            raise ConfigError(f"the data has {len(tokens)} tokens, fewer than train.seq_len+1={seq_len + 1}; "
                              "lower train.seq_len or add data")
        self.order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.order)

    def sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = int(self.order[index % len(self.order)]) * self.seq_len
        window = self.tokens[start : start + self.seq_len + 1]
        return window[:-1], window[1:]


def _nearest(value: int, unit: int) -> int:
    return unit * max(1, round(value / unit))


class StepBatches:
    """This rank's micro-batches of one optimizer step."""

    def __init__(self, windows: TokenWindows, global_batch: int, micro_batch: int, dp_rank: int, dp_size: int):
        per_rank = global_batch // dp_size
        if global_batch % dp_size or per_rank % micro_batch:
            unit = dp_size * micro_batch
            raise ConfigError(
                f"train.global_batch_size={global_batch} must be a multiple of dp ({dp_size}) x "
                f"train.micro_batch_size ({micro_batch}); try train.global_batch_size={_nearest(global_batch, unit)}"
            )
        self.windows, self.global_batch, self.micro_batch = windows, global_batch, micro_batch
        self.first, self.per_rank = dp_rank * per_rank, per_rank

    def __call__(self, step: int) -> list[Batch]:
        base = step * self.global_batch + self.first
        out = []
        for start in range(0, self.per_rank, self.micro_batch):
            pairs = [self.windows.sample(base + start + i) for i in range(self.micro_batch)]
            inputs = torch.stack([p[0] for p in pairs])
            positions = torch.arange(inputs.shape[1]).expand_as(inputs)
            out.append(Batch(inputs, torch.stack([p[1] for p in pairs]), positions))
        return out
