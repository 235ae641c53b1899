"""Load a Hugging Face safetensors checkpoint into a sharded model, each rank reading only its slices.

The model arrives as ``build_run`` leaves it: built on the meta device and parallelized (TP, then
FSDP2), so every parameter's placements say which block of the full tensor this rank holds. The
loader materializes the local shards and fills each with ``get_slice(name)[slices]``, which copies
just that block out of the memory-mapped file. No rank ever holds a tensor it does not own, so
host memory per rank falls with the world size (README, "Fine-tune a Hugging Face model folder").
Weights are cast on copy to the dtype the model was built in (``model.dtype``), whatever dtype the
checkpoint stores. A parameter that checkpoints store under another name, or that transformers holds fused over
experts and checkpoints store one matrix per expert (``plans.STORED_AS``), is read the same way, from the pieces
its block covers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from shardwise.config import ConfigError
from shardwise.model import CausalLM, local_slices, materialize, reset_buffers
from shardwise.plans import STORED_AS
from shardwise.tp import local_tensor

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# Stored by some exports (older Llama ones) although the model recomputes it: see ``reset_buffers``.
RECOMPUTED_SUFFIX = ".rotary_emb.inv_freq"


@dataclass
class Checkpoint:
    """Where each stored tensor lives and its shape, read from the file headers only."""

    folder: Path
    listing: str  # the file that names the tensors: the index, or the single file
    files: dict[str, Path]
    shapes: dict[str, list[int]]


def checkpoint_files(folder: str | Path) -> tuple[str, list[Path]]:
    """The safetensors files of a model folder: the index's shards, else ``model.safetensors``.

    Returns the file that lists the tensors (for error messages) and the files that hold them.
    """
    folder = Path(folder)
    index = folder / INDEX
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise ConfigError(f"model.path={folder}: {INDEX} has no valid weight_map; re-download the model") from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ConfigError(f"model.path={folder}: {INDEX} lists {missing[0]}, which is not there; "
                              "re-download the model")
        return INDEX, [folder / n for n in names]
    if (folder / SINGLE).is_file():
        return SINGLE, [folder / SINGLE]
    raise ConfigError(f"model.path={folder}: no {SINGLE} or {INDEX} there; "
                      "point it at a Hugging Face model folder with safetensors weights")


def open_checkpoint(folder: str | Path) -> Checkpoint:
    """Every tensor's file and shape; no tensor data is read."""
    folder = Path(folder)
    listing, paths = checkpoint_files(folder)
    files, shapes = {}, {}
    for path in paths:
        with safe_open(path, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - a safe_open handle is not iterable
                files[name], shapes[name] = path, f.get_slice(name).get_shape()
    return Checkpoint(folder, listing, files, shapes)


@dataclass(frozen=True)
class PerExpert:
    """A parameter stored one matrix per expert: ``parts[p][e]`` is expert e's matrix of part p. The parameter
    stacks each part's matrices along dim 0 (experts) and puts the parts one after another along dim 1."""

    parts: tuple[tuple[str, ...], ...]

    def names(self) -> list[str]:
        return [name for part in self.parts for name in part]

    def shape(self, ckpt: Checkpoint) -> list[int]:
        """The stacked shape the stored matrices make (their part 0, expert 0 says the rest)."""
        rows = sum(ckpt.shapes[part[0]][0] for part in self.parts)
        return [len(self.parts[0]), rows, *ckpt.shapes[self.parts[0][0]][1:]]

    def read(self, ckpt: Checkpoint, block: tuple[slice, ...]) -> torch.Tensor:
        """``block`` of the stacked parameter, each expert's rows read from the part that holds them."""
        experts, rows, rest = block[0], block[1], block[2:]
        if any(s.stop <= s.start for s in block):  # FSDP may leave a rank no experts
            return torch.empty([s.stop - s.start for s in block])
        out = []
        for expert in range(experts.start, experts.stop):
            pieces, first = [], 0
            for part in self.parts:
                name = part[expert]
                size = ckpt.shapes[name][0]
                start, stop = max(rows.start - first, 0), min(rows.stop - first, size)
                if start < stop:
                    pieces.append(_read(ckpt, name, (slice(start, stop), *rest)))
                first += size
            out.append(torch.cat(pieces))
        return torch.stack(out)


Stored = str | PerExpert


def _read(ckpt: Checkpoint, name: str, block: tuple[slice, ...]) -> torch.Tensor:
    with safe_open(ckpt.files[name], framework="pt") as f:
        return f.get_slice(name)[block]


def _stored_as(model: CausalLM, name: str, experts: int, ckpt: Checkpoint) -> Stored | None:
    """How ``ckpt`` stores ``name`` under its architecture's other name, or one matrix per expert
    (``plans.STORED_AS``), where the file has them all."""
    for suffix, parts in STORED_AS.get(model.hf.config.model_type, {}).items():
        if name.endswith(suffix):
            prefix = name.removesuffix(suffix)
            if "{}" not in parts[0]:
                return prefix + parts[0] if prefix + parts[0] in ckpt.files else None
            stored = PerExpert(tuple(tuple(prefix + part.format(e) for e in range(experts)) for part in parts))
            return stored if all(n in ckpt.files for n in stored.names()) else None
    return None


def match_tensors(model: CausalLM, ckpt: Checkpoint) -> dict[str, Stored]:
    """Stored tensor name (or per-expert matrices) for each (unique) parameter of ``model``; raises on any mismatch.

    A tied parameter has several names (``model.embed_tokens.weight``, ``lm_head.weight``); any
    one of them stored is enough, and the others are not unexpected. Parameter names are
    ``hf.`` + the Hugging Face names.
    """
    aliases: dict[int, list[str]] = defaultdict(list)
    for name, param in model.named_parameters(remove_duplicate=False):
        aliases[id(param)].append(name.removeprefix("hf."))
    plan: dict[str, Stored] = {}
    for name, param in model.named_parameters():
        hf_name = name.removeprefix("hf.")
        stored = next((a for a in aliases[id(param)] if a in ckpt.files), None)
        if stored is None:
            stored = _stored_as(model, hf_name, param.shape[0], ckpt)
        if stored is None:
            raise ConfigError(f"model.path={ckpt.folder}: {ckpt.listing} has no tensor {hf_name!r}; "
                              "its weights do not match its config.json")
        if isinstance(stored, PerExpert):
            shape, first = stored.shape(ckpt), stored.parts[0][0]
            what = f"{hf_name!r} as one matrix per expert ({first!r}, ...)"
        else:
            shape, first, what = ckpt.shapes[stored], stored, repr(stored)
        if shape != list(param.shape):
            raise ConfigError(f"model.path={ckpt.folder}: {ckpt.files[first].name} holds {what} with shape "
                              f"{shape}, but config.json implies {list(param.shape)}")
        plan[name] = stored
    known = {a for names in aliases.values() for a in names}
    known |= {n for stored in plan.values() for n in (stored.names() if isinstance(stored, PerExpert) else [stored])}
    for stored, path in ckpt.files.items():
        if stored not in known and not stored.endswith(RECOMPUTED_SUFFIX):
            raise ConfigError(f"model.path={ckpt.folder}: {path.name} holds unexpected tensor {stored!r}; "
                              "its config.json describes a different model")
    return plan


@torch.no_grad()
def load_weights(model: CausalLM, folder: str | Path, device: torch.device) -> int:
    """Materialize a meta (possibly sharded) model with this rank's slices of the checkpoint.

    Every tensor is checked before any memory is allocated. Each file is opened per tensor so its
    memory map, whose touched pages count as this process's memory, never outlives one read.
    Returns the number of elements this rank read: the local numel, not the global one.
    """
    ckpt = open_checkpoint(folder)
    plan = match_tensors(model, ckpt)
    materialize(model, device)
    read = 0
    for name, param in model.named_parameters():
        stored, slices = plan[name], local_slices(param)
        block = stored.read(ckpt, slices) if isinstance(stored, PerExpert) else _read(ckpt, stored, slices)
        local_tensor(param).copy_(block)
        read += block.numel()
    reset_buffers(model, device)
    return read
