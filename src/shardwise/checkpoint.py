"""Checkpoints: atomic DCP saves, exact resume on any layout, and export to a Hugging Face folder.

A checkpoint is ``output.dir/checkpoints/step-N``: the model and optimizer through the
distributed state-dict API (so DCP reshards them onto whatever layout loads them), the LR
schedule and the step, each rank's RNG state, and, for export, the HF config, the tokenizer and
``shardwise.json`` (step, layout, resolved config). Every rank writes into ``.step-N.tmp``;
rank 0 writes ``shardwise.json`` last and only then renames the folder, so a ``step-N`` folder
with ``shardwise.json`` is complete and a crash leaves at most an ignored ``.step-*`` folder.
Data needs no state: a step's batch is a pure function of (seed, step).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from shardwise.config import Config, ConfigError
from shardwise.model import build_meta_model, hf_config

if TYPE_CHECKING:
    from shardwise.train import Run

MARKER = "shardwise.json"  # written last: its presence makes a step-N folder a complete checkpoint
_STEP_DIR = re.compile(r"step-(\d+)")
# What must match for a checkpoint to load into the configured model.
_SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings")


def checkpoints_root(cfg: Config) -> Path:
    return Path(cfg.output.dir) / "checkpoints"


def read_marker(path: Path, label: str) -> dict:
    """The metadata of a complete checkpoint; a one-line error naming ``label`` for anything else."""
    if not (path / MARKER).is_file():
        raise ConfigError(f"{label}: not a complete shardwise checkpoint (no {MARKER}); "
                          "give a checkpoints/step-N folder")
    return json.loads((path / MARKER).read_text())


def complete_checkpoints(root: Path) -> list[Path]:
    """``step-N`` folders holding the marker, oldest first; temporary ``.step-*`` folders never match."""
    found = [p for p in root.glob("step-*") if _STEP_DIR.fullmatch(p.name) and (p / MARKER).is_file()]
    return sorted(found, key=_step)


def _step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def resume_dir(cfg: Config) -> Path | None:
    """The checkpoint ``checkpoint.resume`` names, or None to start fresh; refuses to shadow checkpoints."""
    existing = complete_checkpoints(checkpoints_root(cfg))
    newest = existing[-1] if existing else None
    choice = cfg.checkpoint.resume
    if choice == "":
        if newest:
            raise ConfigError(f"output.dir={cfg.output.dir} already has checkpoints (newest {newest.name}); "
                              "pass --checkpoint.resume=auto to continue, or choose another output.dir")
        return None
    path = newest if choice == "auto" else Path(choice)
    if path is None:
        return None
    meta = read_marker(path, f"checkpoint.resume={path}")
    if newest and _step(newest) > meta["step"]:
        raise ConfigError(f"checkpoint.resume={choice} is older than {newest}, which resuming would overwrite; "
                          "use --checkpoint.resume=auto, or choose another output.dir")
    _check_same_model(path, cfg)
    return path


def _check_same_model(path: Path, cfg: Config) -> None:
    """Name the first shape that differs; DCP itself would only report mismatched tensor sizes."""
    saved, current = AutoConfig.from_pretrained(path).to_dict(), hf_config(cfg.model).to_dict()
    for key in _SHAPE_KEYS:
        if saved.get(key) != current.get(key):
            raise ConfigError(f"checkpoint {path} holds another model ({key} {saved.get(key)!r}, not "
                              f"{current.get(key)!r}); resume with the model.preset or model.path it was trained with")


def _train_state(run: Run) -> dict:
    """What DCP saves and loads: sharded model and optimizer state, and the LR schedule (Stateful)."""
    model_sd, optim_sd = get_state_dict(run.model, run.optimizer)
    return {"model": model_sd, "optim": optim_sd, "scheduler": run.scheduler}


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    """Flush every file and the folder itself, so a rename after it never publishes unwritten data."""
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    """Flush one file, or one folder's entries (renames, new files), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def due(cfg: Config, step: int) -> bool:
    """After the last step, and every ``checkpoint.every`` steps (0: only the last)."""
    every = cfg.checkpoint.every
    return step == cfg.train.steps or (every > 0 and step % every == 0)


def save(run: Run, step: int, tokenizer: PreTrainedTokenizerBase) -> None:
    """Write ``step-N`` atomically on every rank, then keep the newest ``checkpoint.keep``."""
    root, rank = checkpoints_root(run.cfg), dist.get_rank()
    tmp, final = root / f".step-{step}.tmp", root / f"step-{step}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crash while saving this same step
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save({**_train_state(run), "step": step}, checkpoint_id=tmp)
    torch.save(_rng_state(), tmp / f"rng-rank{rank}.pt")
    _fsync(tmp / f"rng-rank{rank}.pt")  # DCP flushes its own files; on a shared file system only the writer can
    dist.barrier()
    if rank == 0:
        _write_export_files(run, step, tokenizer, tmp)
        tmp.rename(final)
        _fsync(root)
        prune(root, run.cfg.checkpoint.keep)
    dist.barrier()


def _write_export_files(run: Run, step: int, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """HF config, tokenizer, then the marker with the resolved config; flushed before the rename."""
    run.model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    layout = run.layout
    meta = {"step": step, "world_size": layout.world_size,
            "mesh": {"dp_replicate": layout.dp_replicate, "dp_shard": layout.dp_shard, "tp": layout.tp},
            "config": run.cfg.to_dict()}
    (folder / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    _fsync_tree(folder)


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and leftovers of crashed saves.

    A checkpoint is first renamed out of the ``step-N`` namespace, so a crash while deleting it
    never leaves a partial ``step-N`` that looks complete.
    """
    for old in complete_checkpoints(root)[:-keep]:
        old.rename(root / f".{old.name}.del")
    for leftover in root.glob(".step-*"):
        shutil.rmtree(leftover)


def resume(run: Run, path: Path | None) -> int:
    """Load model, optimizer, schedule and RNG from ``path`` into ``run``; returns the step to continue from.

    RNG streams are per rank, so they are restored only on the world size that saved them; on
    another layout each rank's random draws differ anyway. shardwise itself draws none (init and
    data are seeded explicitly), so this matters only for randomness in the model, e.g. dropout.
    """
    if path is None:
        return 0
    state = {**_train_state(run), "step": -1}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(run.model, run.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if read_marker(path, str(path))["world_size"] == dist.get_world_size():
        _set_rng_state(torch.load(path / f"rng-rank{dist.get_rank()}.pt"))
    return state["step"]


def export(checkpoint: Path, out: Path) -> None:
    """Write a checkpoint as a Hugging Face folder (config, safetensors, tokenizer), in one process.

    The model is rebuilt from the checkpoint's own HF config with ``CausalLM``'s parameter names
    (the ``hf.`` prefix included), so DCP gathers the sharded tensors into it by name; HF's
    ``save_pretrained`` then writes ``hf`` with tied embeddings stored once.
    """
    read_marker(checkpoint, str(checkpoint))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} is not empty; give a new or empty output folder")
    model = build_meta_model(AutoConfig.from_pretrained(checkpoint)).to_empty(device="cpu")
    model.hf.tie_weights()  # to_empty gives tied parameters separate storage; save_pretrained must see one
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=checkpoint, no_dist=True)
    model.load_state_dict(state["model"])  # DCP's contract: loads into tensors in place, the module applies them
    model.config.use_cache = True  # the trainer turns the KV cache off; generation wants it back
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.hf.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(tmp)
    _fsync_tree(tmp)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
