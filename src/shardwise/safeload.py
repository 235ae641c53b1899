"""Load a DCP checkpoint without running code from it.

DCP keeps its ``.metadata`` and every non-tensor value (the step, the LR schedule, optimizer
hyperparameters) as pickles, which it reads with ``pickle.load`` and ``torch.load(weights_only=False)``:
a checkpoint from someone else could run any code as it loads. Here ``.metadata`` is first read
by an unpickler that builds only DCP's own metadata classes, torch sizes, dtypes, layouts and
memory formats, and paths; and every non-tensor value must load with ``torch.load(weights_only=True)``
(plain data) before DCP reads it. Anything else is refused with one line naming the checkpoint.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import CheckpointException, DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import ReadItem

from shardwise.config import ConfigError

_METADATA_MODULE = "torch.distributed.checkpoint.metadata"
_ALLOWED = {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
            ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"),
            ("collections", "OrderedDict")}
_TORCH_CONSTANTS = (torch.dtype, torch.layout, torch.memory_format)


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        constant = module == "torch" and isinstance(getattr(torch, name, None), _TORCH_CONSTANTS)
        if module == _METADATA_MODULE or (module, name) in _ALLOWED or constant:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not checkpoint metadata")


class _NotPlainData(pickle.UnpicklingError):
    pass


class _PlainDataPlanner(DefaultLoadPlanner):
    """DCP's default planner, refusing non-tensor values that are not plain data."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            torch.load(value, weights_only=True)
        except pickle.UnpicklingError as err:
            raise _NotPlainData(f"{read_item.dest_index.fqn!r} is not plain data") from err
        value.seek(0)
        super().load_bytes(read_item, value)


def metadata(path: Path) -> Metadata:
    """The checkpoint's DCP metadata (what it holds, under which names), read by the restricted unpickler."""
    try:
        with (path / ".metadata").open("rb") as f:
            return _MetadataUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
        raise ConfigError(f"{path}: its .metadata is not DCP checkpoint metadata ({err}); refusing to load it") from None


def load(state: dict[str, Any], path: Path, **kwargs: Any) -> None:
    """``dcp.load(state, checkpoint_id=path, **kwargs)`` after checking that ``path`` holds only plain data."""
    metadata(path)
    try:
        dcp.load(state, checkpoint_id=path, planner=_PlainDataPlanner(), **kwargs)
    except CheckpointException as err:  # DCP gathers every rank's failure
        unsafe = next((e for e, _ in err.failures.values() if isinstance(e, _NotPlainData)), None)
        if unsafe is None:
            raise
        raise ConfigError(f"{path}: checkpoint value {unsafe}; refusing to load it") from None
