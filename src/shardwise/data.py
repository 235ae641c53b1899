"""Samples of tokenized documents and their deterministic split over steps, DP ranks and micro-batches.

Sample ``j`` of the run is fixed by ``train.seed`` alone. Step ``s`` takes samples
``s*G .. s*G+G-1`` (``G = train.global_batch_size``); DP rank ``r`` takes the ``r``-th
contiguous ``G/dp`` of them, cut into micro-batches. Every layout therefore sees the same
global batch at every step, which is what makes loss curves layout-invariant.

A sample is ``seq_len`` tokens with labels (the next token, or ignored) and ``position_ids``.
With ``data.packing`` (``TokenWindows``) documents are laid end to end and cut into windows;
positions restart at 0 where a document starts, and ``CausalLM`` turns those restarts into a
mask that keeps attention inside each document. Without it (``DocumentSamples``) a sample is one
document, cut or padded to ``seq_len``. Reading and tokenizing files is ``shardwise.corpus``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from shardwise.config import Config, ConfigError, DataConfig
from shardwise.corpus import Documents, load_documents
from shardwise.cp import local_indices
from shardwise.loss import IGNORE_INDEX
from shardwise.model import document_ids, has_restarts, hf_config
from shardwise.roundtrip import check_round_trip

EOS = "<|endoftext|>"
# The built-in tokenizer's chat template: each turn is "<|role|>\n" + content + EOS, so an
# assistant turn's trained tokens are its content and the EOS that ends it.
BYTE_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which byte-level models expect."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(extra)}}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """UTF-8 bytes as ids 0..255 plus ``<|endoftext|>`` = 256, as a real HF tokenizer.

    Being an ordinary ``tokenizers`` model, it is saved with exported checkpoints and loads back
    through ``AutoTokenizer``, so presets and real models share one data path. Its simple chat
    template lets presets train on chat ``messages`` too.
    """
    chars = _bytes_to_unicode()
    model = Tokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    model.decoder = decoders.ByteLevel()
    model.add_special_tokens([EOS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, eos_token=EOS, pad_token=EOS)
    tokenizer.chat_template = BYTE_CHAT_TEMPLATE
    return tokenizer


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
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.model.trust_remote_code)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{key}={source}: no loadable tokenizer there ({type(err).__name__}); "
                              "set data.tokenizer to a folder with tokenizer.json") from None
    vocab = hf_config(cfg.model).vocab_size
    if len(tokenizer) > vocab:
        label = f"{key}={source}" if source else "the built-in byte tokenizer"
        raise ConfigError(f"{label}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                          f"{vocab}; set data.tokenizer to the model's own tokenizer")
    return tokenizer


@dataclass
class Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    # Whether a document starts after a row's first token (so attention needs a document mask);
    # None = not known yet. ``to`` decides it while the positions are still on the CPU, so the
    # forward never waits on the GPU to find out.
    packed: bool | None = None
    # Context parallelism (``split_sequence``): the document ids of the whole rows, whose tokens
    # this rank's queries may attend to; None while a batch holds whole rows.
    documents: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        packed = self.packed if self.packed is not None else has_restarts(self.position_ids)
        moved = (t if t is None else t.to(device, non_blocking=True)
                 for t in (self.input_ids, self.labels, self.position_ids, self.documents))
        input_ids, labels, position_ids, documents = moved
        return Batch(input_ids, labels, position_ids, packed, documents)


def pad_to_multiple(batch: Batch, multiple: int) -> Batch:
    """Pad the sequence to a multiple of ``multiple`` (``Layout.seq_multiple``) so sequence shards are even.

    Padding labels are ignored and padded positions continue the sequence (so, packed, the
    padding joins the last document), so causal attention leaves every real token's output unchanged.
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
        batch.packed,
    )


def split_sequence(batch: Batch, cp: int, rank: int) -> Batch:
    """Context-parallel rank ``rank``'s tokens of every row (chunks ``rank`` and ``2cp-1-rank``, see
    ``shardwise.cp``), with their labels and positions, and the document ids of the whole rows, found
    before the split since a document may span chunks of several ranks. The row length must be a multiple
    of ``2·cp`` (``cp.errors`` refuses any other ``train.seq_len``). cp=1 keeps the batch as it is."""
    if cp == 1:
        return batch
    index = local_indices(batch.input_ids.shape[1], cp, rank)
    packed = batch.packed if batch.packed is not None else has_restarts(batch.position_ids)
    local = (t[:, index] for t in (batch.input_ids, batch.labels, batch.position_ids))
    return Batch(*local, packed, document_ids(batch.position_ids))


def load_tokens(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Every document of the corpus, in order, as one stream: document structure dropped.

    What plain causal windows over the corpus need (``TokenWindows`` of a tensor, as the parity
    tests train on); training itself uses ``load_data``.
    """
    return torch.from_numpy(np.concatenate(load_documents(cfg, tokenizer).ids)).long()


Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input_ids, labels, position_ids, each (seq_len,)


class Samples(Protocol):
    """A seeded, indexable sequence of samples: ``TokenWindows`` or ``DocumentSamples``."""

    def __len__(self) -> int: ...

    def sample(self, index: int) -> Sample: ...


def _positions(restart: np.ndarray) -> torch.Tensor:
    """0, 1, 2, ... restarting wherever ``restart`` is True (and at index 0)."""
    idx = np.arange(len(restart))
    return torch.from_numpy(idx - np.maximum.accumulate(np.where(restart, idx, 0)))


class TokenWindows:
    """``seq_len`` windows over documents laid end to end (packing), in a seeded random order.

    Positions restart at 0 where a document (or a window) starts. A label is ignored where its
    token is not a target, which includes every document's first token, so nothing is predicted
    across documents. A plain tensor is one document of all targets (synthetic data).
    """

    def __init__(self, docs: Documents | torch.Tensor, seq_len: int, seed: int, doc_ids: np.ndarray | None = None):
        self.docs = docs if isinstance(docs, Documents) else Documents.from_tokens(docs)
        self.doc_ids = np.arange(len(self.docs)) if doc_ids is None else doc_ids
        self.seq_len = seq_len
        self.ends = np.cumsum(self.docs.lengths[self.doc_ids])
        total = int(self.ends[-1]) if len(self.ends) else 0
        count = (total - 1) // seq_len
        if count < 1:
            raise ConfigError(f"the data has {total} tokens, fewer than train.seq_len+1={seq_len + 1}; "
                              "lower train.seq_len or add data")
        self.order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.order)

    def _span(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tokens ``start..stop-1`` of the stream, their targets, and where documents start."""
        ids, target, restart = [], [], []
        k = int(np.searchsorted(self.ends, start, side="right"))
        while start < stop:
            doc_ids, doc_target = self.docs.get(int(self.doc_ids[k]))
            offset = start - (int(self.ends[k]) - len(doc_ids))
            take = min(stop - start, len(doc_ids) - offset)
            ids.append(doc_ids[offset : offset + take])
            target.append(doc_target[offset : offset + take])
            restart.append(np.arange(take) == 0 if offset == 0 else np.zeros(take, dtype=bool))
            start, k = start + take, k + 1
        return np.concatenate(ids).astype(np.int64), np.concatenate(target), np.concatenate(restart)

    def sample(self, index: int) -> Sample:
        start = int(self.order[index % len(self.order)]) * self.seq_len
        ids, target, restart = self._span(start, start + self.seq_len + 1)
        tokens = torch.from_numpy(ids)
        labels = torch.where(torch.from_numpy(target[1:] != 0), tokens[1:], IGNORE_INDEX)
        return tokens[:-1], labels, _positions(restart[:-1])


class DocumentSamples:
    """One document per sample (``data.packing=false``), in a seeded random order.

    A document is cut to ``seq_len`` inputs or padded after its end; padding and non-target
    tokens get ignored labels, so micro-batches hold uneven numbers of loss tokens (the loss is
    still the token mean over the global step, see ``shardwise.loss``).
    """

    def __init__(self, docs: Documents, seq_len: int, seed: int, doc_ids: np.ndarray | None = None):
        doc_ids = np.arange(len(docs)) if doc_ids is None else doc_ids
        self.docs, self.seq_len = docs, seq_len
        self.order = doc_ids[torch.randperm(len(doc_ids), generator=torch.Generator().manual_seed(seed)).numpy()]

    def __len__(self) -> int:
        return len(self.order)

    def sample(self, index: int) -> Sample:
        ids, target = self.docs.get(int(self.order[index % len(self.order)]))
        n = min(len(ids) - 1, self.seq_len)
        tokens = torch.from_numpy(ids[: n + 1].astype(np.int64))
        inputs = torch.zeros(self.seq_len, dtype=torch.long)
        labels = torch.full((self.seq_len,), IGNORE_INDEX, dtype=torch.long)
        inputs[:n] = tokens[:n]
        labels[:n] = torch.where(torch.from_numpy(target[1 : n + 1] != 0), tokens[1:], IGNORE_INDEX)
        return inputs, labels, torch.arange(self.seq_len)


def sample_kind(cfg: DataConfig) -> type[TokenWindows | DocumentSamples]:
    """How documents become rows: packed end to end (``data.packing``), else one per row."""
    return TokenWindows if cfg.packing else DocumentSamples


def split_documents(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) document indices: ``ceil(fraction * n)`` held out, chosen by ``seed`` alone.

    When that would leave nothing to train on, nothing is held out: ``val_loss`` is an aid, and a
    single document (one ``.txt`` file) should still train.
    """
    n_val = math.ceil(fraction * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    if n_val >= n:
        return np.arange(n), np.arange(0)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _warn(message: str) -> None:
    """One line on stderr, from the first rank only."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(f"shardwise: warning: {message}", file=sys.stderr, flush=True)


def load_data(cfg: Config, tokenizer: PreTrainedTokenizerBase) -> tuple[Samples, Samples | None]:
    """Training samples and held-out samples (None when ``data.val_fraction`` is 0 or the data too small).

    Refuses a tokenizer that does not give back the text it encodes (``shardwise.roundtrip``).
    """
    docs = load_documents(cfg.data, tokenizer)
    check_round_trip(cfg, tokenizer)
    train_ids, val_ids = split_documents(len(docs), cfg.data.val_fraction, cfg.train.seed)
    kind = sample_kind(cfg.data)
    train = kind(docs, cfg.train.seq_len, cfg.train.seed, train_ids)
    if cfg.data.val_fraction > 0 and not len(val_ids):
        _warn(f"{len(docs)} document(s) are too few to hold out data.val_fraction={cfg.data.val_fraction}; "
              "val_loss is off (give more documents, or set data.val_fraction=0 to silence this)")
    if not len(val_ids):
        return train, None
    if cfg.data.packing and docs.lengths[val_ids].sum() <= cfg.train.seq_len:
        _warn(f"the held-out documents (data.val_fraction={cfg.data.val_fraction}) have fewer than "
              f"train.seq_len+1={cfg.train.seq_len + 1} tokens; val_loss is off (raise data.val_fraction)")
        return train, None
    return train, kind(docs, cfg.train.seq_len, cfg.train.seed, val_ids)


def _nearest(value: int, unit: int) -> int:
    return unit * max(1, round(value / unit))


def micro_batch_size(global_batch: int, micro_batch: int, dp_size: int) -> int:
    """Sequences per forward: ``train.micro_batch_size``, or a DP rank's whole share when that is smaller
    (e.g. the default job's 8 on 8 GPUs, where each DP rank gets 4 of the 16)."""
    return min(micro_batch, max(1, global_batch // dp_size))


class StepBatches:
    """This rank's micro-batches of one optimizer step."""

    def __init__(self, samples: Samples, global_batch: int, micro_batch: int, dp_rank: int, dp_size: int):
        per_rank = global_batch // dp_size
        micro = micro_batch_size(global_batch, micro_batch, dp_size)
        if global_batch % dp_size or per_rank % micro:
            # the micro-batch is named only where it is the divisor that fails: capped at an uneven share, it is not
            # the value the user set
            unit = f"dp ({dp_size})" + ("" if global_batch % dp_size else f" x train.micro_batch_size ({micro})")
            raise ConfigError(f"train.global_batch_size={global_batch} must be a multiple of {unit}; "
                              f"try train.global_batch_size={_nearest(global_batch, dp_size * micro)}")
        self.samples, self.global_batch, self.micro_batch = samples, global_batch, micro
        self.first, self.per_rank = dp_rank * per_rank, per_rank

    def __call__(self, step: int) -> list[Batch]:
        base = step * self.global_batch + self.first
        out = []
        for start in range(0, self.per_rank, self.micro_batch):
            rows = [self.samples.sample(base + start + i) for i in range(self.micro_batch)]
            out.append(Batch(*(torch.stack(column) for column in zip(*rows))))
        return out
