"""Local files -> tokenized documents, through Hugging Face ``datasets``, cached on disk.

``data.path`` is a file, a folder (searched recursively, hidden entries skipped) or a glob,
all of one format:

- ``.txt``: one document per file (the whole file, so text is never split at arbitrary places);
- ``.jsonl`` / ``.json`` / ``.parquet``: one document per record, from its ``text`` field (loss
  on every token), its ``prompt`` + ``completion`` fields (loss on the completion only), or its
  chat ``messages`` (a list of ``{role, content}``) rendered with the tokenizer's chat template
  (loss on the assistant turns only).

Each document becomes ``input_ids`` ended by EOS and a 0/1 ``target`` per token: whether the
model is trained to predict that token. A document's first token is never a target, so nothing
is predicted across a document boundary when documents are packed.

Tokenization runs once per fingerprint (tokenizer, files with their sizes and mtimes, and the
tokenization rules), in local rank 0 of each node, with ``data.num_proc`` processes; it writes
``<cache>/shardwise/<fingerprint>*.arrow``. The other ranks wait, then open the same files.
``Documents`` reads tokens in place from the memory-mapped Arrow buffers, so no rank copies
the corpus into its own memory.

Every dataset here is file-backed, the built-in stdlib corpus included (written once as a Parquet
file, then read like user data), and every fingerprint is explicit or derived from file paths and
mtimes. ``datasets`` fingerprints an in-memory table by pickling it with dill, and sends in-memory
shards to ``num_proc`` workers pickled by value; a memory-mapped table pickles as its path. Pickling
Arrow tables that way fails on some Python 3.12 images (``Can't pickle <class 'MonthDayNano'>``), so
the data layer never depends on it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sys
import sysconfig
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from datasets import Dataset, Features, List, Value, load_dataset
from transformers import PreTrainedTokenizerBase

from shardwise.config import ConfigError, DataConfig

BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
# Bump whenever ``tokenize_batch`` changes what it produces: it is part of the cache fingerprint.
TOKENIZATION_VERSION = 1
# Bump whenever ``stdlib_corpus`` changes which texts it collects: it is part of the corpus file's key.
CORPUS_VERSION = 1
FEATURES = Features({"input_ids": List(Value("int32")), "target": List(Value("int8"))})
# Jinja ``{% generation %}`` blocks: the template marks assistant tokens itself.
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
T = TypeVar("T")


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


def data_files(path: str) -> tuple[str, list[Path]]:
    """The ``datasets`` builder and the sorted files that ``data.path`` names."""
    root = Path(path)
    if root.is_dir():
        files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in BUILDERS
                       and not any(part.startswith(".") for part in f.relative_to(root).parts))
    elif any(c in path for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(path, recursive=True) if Path(f).is_file())
    elif root.is_file():
        files = [root]
    else:
        raise ConfigError(f"data.path={path} does not exist; give a file, a folder or a glob")
    if not files:
        raise ConfigError(f"data.path={path} matches no .txt, .jsonl, .json or .parquet file")
    unknown = sorted({f.suffix or f.name for f in files if f.suffix.lower() not in BUILDERS})
    if unknown:
        raise ConfigError(f"data.path={path}: unsupported file type {unknown[0]}; use .txt, .jsonl, .json or .parquet")
    builders = sorted({BUILDERS[f.suffix.lower()] for f in files})
    if len(builders) > 1:
        raise ConfigError(f"data.path={path} mixes {' and '.join(builders)} files; use one format")
    empty = next((f for f in files if f.stat().st_size == 0), None)
    if empty:
        raise ConfigError(f"data.path={path}: {empty} is empty")
    return builders[0], files


def stdlib_key(max_bytes: int) -> str:
    """What the stdlib corpus holds depends on: this Python's standard library and ``data.max_bytes``."""
    key = [CORPUS_VERSION, sys.version, sysconfig.get_paths()["stdlib"], max_bytes]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]


def stdlib_file(max_bytes: int, cache: Path) -> Path:
    """The stdlib corpus as a Parquet file of ``text`` records, written once under its key.

    A file, so the corpus loads like user data: memory-mapped, fingerprinted from its path, never
    held in (or hashed from) each rank's memory. It is written under a temporary name in the same
    folder, then renamed, so a concurrent run never reads a partial file; as its name is the key of
    its contents, a concurrent run that renames its own copy over it replaces it with the same records.
    """
    path = cache / "shardwise" / f"stdlib-{stdlib_key(max_bytes)}.parquet"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique across processes and hosts
    try:
        pq.write_table(pa.table({"text": stdlib_corpus(max_bytes)}), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_records(cfg: DataConfig, builder: str, files: list[Path], cache: Path) -> Dataset:
    """The raw records (before tokenization) of ``data.path``, or of the stdlib corpus file as ``text``.

    Always ``load_dataset`` on files: it converts them once into memory-mapped Arrow files in
    ``cache`` and fingerprints the result from the files' paths and mtimes, not from its contents.
    """
    if not cfg.path:
        builder, files = "parquet", [stdlib_file(cfg.max_bytes, cache)]
    options = {"sample_by": "document", "encoding_errors": "replace"} if builder == "text" else {}
    try:
        return load_dataset(builder, data_files=[str(f) for f in files], split="train", cache_dir=str(cache),
                            **options)
    except Exception as err:  # noqa: BLE001 - any reader failure means unreadable data: report it in one line
        cause = err.__cause__ or err
        detail = (str(cause).strip().splitlines() or [""])[0]
        where = cfg.path or files[0]
        raise ConfigError(f"data.path={where} cannot be read: {type(cause).__name__}: {detail}") from None


def document_kind(features: Features, path: str) -> str:
    """``chat``, ``completion`` or ``text``, from the record fields (in that order of preference)."""
    if "messages" in features:
        return "chat"
    kind = "completion" if {"prompt", "completion"} <= set(features) else "text" if "text" in features else None
    if kind is None:
        raise ConfigError(f"data.path={path}: records need a 'text' field, 'prompt' and 'completion', or chat "
                          f"'messages'; found {', '.join(features) or 'no fields'}")
    for name in ("prompt", "completion") if kind == "completion" else ("text",):
        if getattr(features[name], "dtype", None) not in ("string", "large_string"):
            raise ConfigError(f"data.path={path}: field '{name}' must hold strings, not {features[name]}")
    return kind


def _bos(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The BOS the tokenizer itself would put before a text ([] for tokenizers that add none)."""
    specials = tokenizer("", add_special_tokens=True)["input_ids"]
    return specials[:1] if specials and specials[0] == tokenizer.bos_token_id else []


def _text_docs(batch: dict[str, list], tokenizer: PreTrainedTokenizerBase) -> list[tuple[list[int], list[int]]]:
    bos = _bos(tokenizer)
    texts = [t for t in batch["text"] if t and t.strip()]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [(bos + ids, [1] * (len(bos) + len(ids))) for ids in encoded]


def _completion_docs(batch: dict[str, list], tokenizer: PreTrainedTokenizerBase) -> list[tuple[list[int], list[int]]]:
    bos = _bos(tokenizer)
    prompts = tokenizer([p or "" for p in batch["prompt"]], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c or "" for c in batch["completion"]], add_special_tokens=False)["input_ids"]
    return [(bos + p + c, [0] * (len(bos) + len(p)) + [1] * len(c)) for p, c in zip(prompts, completions)]


def _assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn.

    A turn runs from the end of the conversation before it rendered with the generation prompt
    (so the assistant header is not trained on) to the end of the conversation through it. That
    needs a template that renders every prefix of a conversation as a prefix of the whole.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(through)):
            raise ConfigError("the chat template of data.tokenizer renders earlier turns differently once later turns "
                              "follow, so assistant tokens cannot be located; use a template with {% generation %} tags")
        spans.append((len(before), len(through)))
    return text, spans


def _chat_docs(batch: dict[str, list], tokenizer: PreTrainedTokenizerBase) -> list[tuple[list[int], list[int]]]:
    """Rendered conversations, targets on the assistant turns (template tags if any, else prefix diffs)."""
    # Arrow gives every message every key seen in the data; missing ones come as None.
    chats = [[{k: v for k, v in m.items() if v is not None} for m in chat] for chat in batch["messages"]]
    if _GENERATION_TAG.search(tokenizer.chat_template):
        enc = tokenizer.apply_chat_template(chats, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        return list(zip(enc["input_ids"], enc["assistant_masks"]))
    texts, spans = zip(*(_assistant_spans(tokenizer, chat) for chat in chats))
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return [(ids, [int(any(s < b and a < e for a, b in doc_spans)) for s, e in offsets])
            for ids, offsets, doc_spans in zip(enc["input_ids"], enc["offset_mapping"], spans)]


_DOCS = {"text": _text_docs, "completion": _completion_docs, "chat": _chat_docs}


def tokenize_batch(batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, kind: str) -> dict[str, list]:
    """Records -> documents ended by EOS, with 0/1 targets; documents without targets are dropped.

    The appended EOS is a target for text and completions (the model learns where they end);
    chat templates end assistant turns with their own tokens, which are targets already.
    """
    eos = tokenizer.eos_token_id
    out: dict[str, list] = {"input_ids": [], "target": []}
    for ids, target in _DOCS[kind](batch, tokenizer):
        if not any(target):
            continue
        if ids[-1] != eos:
            ids, target = [*ids, eos], [*target, int(kind != "chat")]
        out["input_ids"].append(ids)
        out["target"].append([0, *target[1:]])
    return out


def fingerprint(tokenizer: PreTrainedTokenizerBase, files: list[Path], cfg: DataConfig) -> str:
    """Hash of everything the tokenized documents depend on: tokenizer, source and rules."""
    if files:
        source = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    else:  # the stdlib corpus, by its key: its file's mtime changes if a concurrent run renames a copy over it
        source = ["stdlib", stdlib_key(cfg.max_bytes)]
    backend = getattr(tokenizer, "backend_tokenizer", None)  # tokenizers' full state; slow ones: their vocab
    state = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    key = [TOKENIZATION_VERSION, source, type(tokenizer).__name__, state, tokenizer.chat_template,
           tokenizer.bos_token_id, tokenizer.eos_token_id]
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:24]


def tokenize(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, builder: str, files: list[Path],
             cache: Path) -> Dataset:
    """The tokenized documents, from the cache file when it exists, else written to it."""
    where = cfg.path or "<stdlib corpus>"
    records = read_records(cfg, builder, files, cache)
    kind = document_kind(records.features, where)
    if kind == "chat" and not tokenizer.chat_template:
        raise ConfigError(f"data.path={where} holds chat 'messages' but the tokenizer has no chat template; "
                          "set data.tokenizer to one that has")
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token to end documents with; set data.tokenizer to one that has")
    target = cache / "shardwise" / f"{fingerprint(tokenizer, files, cfg)}.arrow"
    target.parent.mkdir(parents=True, exist_ok=True)
    num_proc = cfg.num_proc or min(os.cpu_count() or 1, len(records) // 1000)
    docs = records.map(
        tokenize_batch, fn_kwargs={"tokenizer": tokenizer, "kind": kind}, batched=True,
        num_proc=num_proc if num_proc > 1 else None,  # None tokenizes in this process; 1 would start a pool
        remove_columns=records.column_names, features=FEATURES, cache_file_name=str(target),
        new_fingerprint=target.stem, load_from_cache_file=True, desc="tokenize",
    )
    if len(docs) == 0:
        raise ConfigError(f"data.path={where} holds no text to train on (empty documents, completions and "
                          "conversations without assistant turns are skipped)")
    return docs


def local_rank0_first(build: Callable[[], T]) -> T:
    """Run ``build`` in local rank 0 of each node (it fills the cache), then in the other ranks.

    A ConfigError in a first rank is raised in every rank, so no rank waits for it forever.
    """
    if not dist.is_initialized():
        return build()
    first = int(os.environ.get("LOCAL_RANK", dist.get_rank())) == 0
    result, error = None, None
    if first:
        try:
            result = build()
        except ConfigError as err:
            error = str(err)
    errors: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    message = next((e for e in errors if e), None)
    if message:
        raise ConfigError(message)
    return result if first else build()


@dataclass
class Documents:
    """Tokenized documents, read in place from Arrow buffers (memory-mapped when cached).

    ``ids`` and ``target`` hold one flat array per Arrow record batch; document ``i`` is
    ``ids[chunk[i]][start[i] : start[i] + lengths[i]]``.
    """

    ids: list[np.ndarray]
    target: list[np.ndarray]
    chunk: np.ndarray
    start: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_table(cls, table: pa.Table) -> Documents:
        ids, target, chunk, start, lengths = [], [], [], [], []
        for i, batch in enumerate(table.to_batches()):
            col_ids, col_target = batch.column("input_ids"), batch.column("target")
            offsets = col_ids.offsets.to_numpy().astype(np.int64)
            offsets -= offsets[0]
            ids.append(col_ids.flatten().to_numpy())
            target.append(col_target.flatten().to_numpy())
            chunk.append(np.full(len(col_ids), i))
            start.append(offsets[:-1])
            lengths.append(np.diff(offsets))
        return cls(ids, target, np.concatenate(chunk), np.concatenate(start), np.concatenate(lengths))

    @classmethod
    def from_tokens(cls, tokens: torch.Tensor, lengths: np.ndarray | None = None) -> Documents:
        """A plain token stream (synthetic data, tests) as one document, or cut into documents of ``lengths``
        tokens (the last takes what is left); every token a target but each document's first."""
        ids = tokens.numpy()
        ends = np.cumsum(lengths) if lengths is not None else np.zeros(0, np.int64)
        starts = np.concatenate([[0], ends[ends < len(ids)]]).astype(np.int64)
        target = np.ones(len(ids), np.int8)
        target[starts] = 0
        return cls([ids], [target], np.zeros(len(starts), np.int64), starts, np.diff(np.append(starts, len(ids))))

    def __len__(self) -> int:
        return len(self.lengths)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and 0/1 targets of document ``i`` (views, no copy)."""
        c, s = self.chunk[i], self.start[i]
        return self.ids[c][s : s + self.lengths[i]], self.target[c][s : s + self.lengths[i]]


def load_documents(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase) -> Documents:
    """The tokenized documents of ``data.path`` (or of the stdlib corpus), tokenized once per node."""
    builder, files = data_files(cfg.path) if cfg.path else ("", [])
    cache = Path(cfg.cache_dir or datasets.config.HF_DATASETS_CACHE)
    datasets.disable_progress_bars()  # one bar per rank per stage is noise; training has its own bar
    docs = local_rank0_first(lambda: tokenize(cfg, tokenizer, builder, files, cache))
    return Documents.from_table(docs.data)
