"""Checkpoints: atomic DCP saves with a manifest, verified resume with fallback, export to a Hugging Face folder.

A checkpoint is ``output.dir/checkpoints/step-N``: the model and optimizer through the
distributed state-dict API (so DCP reshards them onto whatever layout loads them), the LR
schedule and the step, each rank's RNG state, and, for export, the HF config, the tokenizer and
``shardwise.json`` (step, layout, resolved config, skipped steps, and the manifest: every other
file's size and checksum, see ``shardwise.manifest``). Every rank writes into ``.step-N.tmp`` and
hashes its own files; rank 0 writes ``shardwise.json`` last and only then renames the folder, so
a ``step-N`` folder with ``shardwise.json`` is complete. A crash or a failed save (a full disk)
leaves at most an ignored ``.step-*`` folder: older checkpoints are pruned only after a newer one
is complete. Resuming verifies the manifest; ``checkpoint.resume=auto`` falls back from a damaged
checkpoint to the next older one, says why, and renames the damaged one ``step-N.damaged``.
Nothing is unpickled but plain data (``shardwise.safeload``). Data needs no state: a step's
batch is a pure function of (seed, step).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from shardwise import manifest, safeload
from shardwise.config import Config, ConfigError
from shardwise.faults import SAVE_FAILED_EXIT, Stop
from shardwise.model import build_meta_model, hf_config, materialize, num_params
from shardwise.run import Run

MARKER = "shardwise.json"  # written last: its presence makes a step-N folder a complete checkpoint
_STEP_DIR = re.compile(r"step-(\d+)")
# What must match for a checkpoint to load into the configured model.
_SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings")
GIB = 2**30
# Tokenizer, configs and DCP metadata on top of the tensors, generously: the free-space check is an estimate.
CHECKPOINT_SLACK_BYTES = 256 << 20
T = TypeVar("T")


def checkpoints_root(cfg: Config) -> Path:
    return Path(cfg.output.dir) / "checkpoints"


def read_marker(path: Path, label: str) -> dict:
    """The metadata of a complete checkpoint; a one-line error naming ``label`` for anything else."""
    if not (path / MARKER).is_file():
        raise ConfigError(f"{label}: not a complete shardwise checkpoint (no {MARKER}); "
                          "give a checkpoints/step-N folder")
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{label}: its {MARKER} cannot be read ({err}); give another checkpoint") from None


def complete_checkpoints(root: Path) -> list[Path]:
    """``step-N`` folders holding the marker, oldest first; temporary ``.step-*`` folders never match."""
    found = [p for p in root.glob("step-*") if _STEP_DIR.fullmatch(p.name) and (p / MARKER).is_file()]
    return sorted(found, key=_step)


def _step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def restarted() -> bool:
    """Whether torchrun restarted this worker group (``--max-restarts``): it then resumes by itself."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def _candidates(cfg: Config) -> tuple[str, list[Path]]:
    """``checkpoint.resume`` (``auto`` in a restarted group) and the checkpoints it allows, best first.

    ``auto``: every complete checkpoint, newest first (the older ones are fallbacks); a path: that
    one; empty: none, refusing an ``output.dir`` that already has checkpoints.
    """
    existing = complete_checkpoints(checkpoints_root(cfg))
    choice = "auto" if restarted() else cfg.checkpoint.resume
    if choice == "":
        if existing:
            raise ConfigError(f"output.dir={cfg.output.dir} already has checkpoints (newest {existing[-1].name}); "
                              "pass --checkpoint.resume=auto to continue, or choose another output.dir")
        return choice, []
    if choice == "auto":
        return choice, existing[::-1]
    path = Path(choice)
    meta = read_marker(path, f"checkpoint.resume={path}")
    if existing and _step(existing[-1]) > meta["step"]:
        raise ConfigError(f"checkpoint.resume={choice} is older than {existing[-1]}, which resuming would overwrite; "
                          "use --checkpoint.resume=auto, or choose another output.dir")
    return choice, [path]


def _structure_problem(path: Path) -> str | None:
    """Why ``path`` is not the checkpoint its manifest describes, by file sizes alone (cheap); None if it may be."""
    try:
        files = json.loads((path / MARKER).read_text()).get("files", {})  # no manifest: saved before manifests
    except (OSError, ValueError) as err:
        return f"{MARKER} cannot be read ({err})"
    return next((p for name, entry in files.items() if (p := manifest.size_problem(path, name, entry))), None)


def _share_problem(path: Path, rank: int, world: int) -> str | None:
    """``_structure_problem``, then the checksums of this rank's share of the files."""
    problem = _structure_problem(path)
    if problem is not None:
        return problem
    files = json.loads((path / MARKER).read_text()).get("files", {})
    return next((p for n in manifest.share(list(files), rank, world) if (p := manifest.problem(path, n, files[n]))),
                None)


def _damage(path: Path) -> str | None:
    """Why ``path`` is damaged, found by all ranks together (each checks its share), or None; a collective."""
    problems: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(problems, _share_problem(path, dist.get_rank(), dist.get_world_size()))
    return next((p for p in problems if p), None)


def _refuse_damaged(choice: str, path: Path, problem: str) -> None:
    if choice != "auto":
        raise ConfigError(f"checkpoint.resume={path} is damaged ({problem}); give another checkpoint, or "
                          "--checkpoint.resume=auto to take the newest intact one")


def resume_dir(cfg: Config) -> Path | None:
    """The checkpoint ``checkpoint.resume`` resumes from, as far as file sizes tell (``preflight``, no processes);
    None to start fresh. ``resume`` in the workers also verifies checksums."""
    choice, candidates = _candidates(cfg)
    for path in candidates:
        problem = _structure_problem(path)
        if problem is None:
            _check_same_model(path, cfg)
            return path
        _refuse_damaged(choice, path, problem)
    if candidates:
        raise ConfigError(f"no checkpoint in {checkpoints_root(cfg)} is intact (e.g. {candidates[0].name}: "
                          f"{_structure_problem(candidates[0])}); move them away to start afresh")
    return None


def _check_same_model(path: Path, cfg: Config) -> None:
    """Name the first shape that differs; DCP itself would only report mismatched tensor sizes. A tied model whose
    head trained apart (``trained_own_head``) is another model too: loading would keep one of its two matrices."""
    saved_config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    saved, current = saved_config.to_dict(), hf_config(cfg.model).to_dict()
    for key in _SHAPE_KEYS:
        if saved.get(key) != current.get(key):
            raise ConfigError(f"checkpoint {path} holds another model ({key} {saved.get(key)!r}, not "
                              f"{current.get(key)!r}); resume with the model.preset or model.path it was trained with")
    if trained_own_head(path, saved_config):
        raise ConfigError(f"checkpoint {path} trained lm_head apart from the tied embedding (as one-process runs from "
                          f"a preset did before 2026-11-27); `shardwise export {path} OUT` keeps both, untied: "
                          "train on from it with --model.path=OUT")


# AdamW's state under the head's own name: a tied head shares the embedding's parameter, and its state, by that name
_OWN_HEAD_STATE = "optim.state.hf.lm_head.weight."


def trained_own_head(path: Path, config: PretrainedConfig) -> bool:
    """Whether a checkpoint of a tied model trained ``lm_head`` as a matrix of its own beside the embedding, as
    one-process runs initialized from a preset did before ``model.materialize`` re-tied them (2026-11-27): its
    optimizer then holds state under the head's name."""
    return bool(config.tie_word_embeddings) and any(
        key.startswith(_OWN_HEAD_STATE) for key in safeload.metadata(path).state_dict_metadata)


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


def check_output_dir(cfg: Config, resume_from: Path | None) -> None:
    """``output.dir`` must be creatable and writable, and its file system must hold the checkpoints to come.

    Checked before training (``preflight``) without creating ``output.dir``: a probe file goes into
    its nearest existing folder. The space needed is this run's peak: each save is written before
    the oldest is pruned, so up to ``checkpoint.keep + 1`` checkpoints exist at once.
    """
    out = Path(cfg.output.dir).absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    probe = existing / f".shardwise-probe-{socket.gethostname()}-{os.getpid()}"
    try:
        if not existing.is_dir():
            raise NotADirectoryError(0, f"{existing} is not a folder")
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"output.dir={cfg.output.dir} is not writable ({err.strerror or err}); "
                          "choose another output.dir") from None
    need = _checkpoint_bytes(cfg) * _checkpoints_to_add(cfg, resume_from)
    free = shutil.disk_usage(existing).free
    if free < need:
        raise ConfigError(f"output.dir={cfg.output.dir} has {free / GIB:.1f} GiB free, but this run's checkpoints need "
                          f"about {need / GIB:.1f} GiB; free space, lower checkpoint.keep, or choose another output.dir")


def _checkpoint_bytes(cfg: Config) -> int:
    """Weights and the two Adam moments, all in ``model.dtype``, plus slack for the rest."""
    params = num_params(build_meta_model(hf_config(cfg.model), trust_remote_code=cfg.model.trust_remote_code))
    return 3 * params * getattr(torch, cfg.model.dtype).itemsize + CHECKPOINT_SLACK_BYTES


def _checkpoints_to_add(cfg: Config, resume_from: Path | None) -> int:
    """How many more checkpoints than now the run's output holds at its peak."""
    first, steps, every = _step(resume_from) if resume_from else 0, cfg.train.steps, cfg.checkpoint.every
    if first >= steps:
        return 0
    saves = (steps // every - first // every if every else 0) + (0 if every and steps % every == 0 else 1)
    kept = min(len(complete_checkpoints(checkpoints_root(cfg))), cfg.checkpoint.keep)
    return max(0, min(saves, cfg.checkpoint.keep + 1 - kept))


def save(run: Run, step: int, tokenizer: PreTrainedTokenizerBase, skipped: int) -> None:
    """Write ``step-N`` atomically on every rank, then keep the newest ``checkpoint.keep``.

    A failure in any rank (a full disk, a lost mount) stops every rank with ``Stop`` after the
    step that failed to save, and leaves every older checkpoint as it was.
    """
    root, rank, world = checkpoints_root(run.cfg), dist.get_rank(), dist.get_world_size()
    tmp, final = root / f".step-{step}.tmp", root / f"step-{step}"
    _together(step, lambda: _make_empty(tmp) if rank == 0 else None)
    shares = _together(step, lambda: _write_shards(run, step, tmp, rank, world))
    files = {name: entry for share in shares for name, entry in share.items()}
    _together(step, lambda: _publish(run, step, tokenizer, tmp, final, files, skipped) if rank == 0 else None)


def _together(step: int, fn: Callable[[], T]) -> list[T]:
    """``fn()`` in every rank, then everyone's results; if it raised in any rank, ``Stop`` in every rank."""
    result, error = None, None
    try:
        result = fn()
    except (OSError, CheckpointException) as err:
        cause = next(iter(err.failures.values()))[0] if isinstance(err, CheckpointException) else err
        error = f"rank {dist.get_rank()}: {type(cause).__name__}: {cause}"
    gathered: list[tuple[T, str | None]] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(gathered, (result, error))
    failed = next((e for _, e in gathered if e), None)
    if failed:
        raise Stop(f"error: saving checkpoint step-{step} failed ({failed}); the older checkpoints are intact",
                   SAVE_FAILED_EXIT)
    return [r for r, _ in gathered]


def _make_empty(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # left by a crash while saving this same step
    folder.mkdir(parents=True)


def _write_shards(run: Run, step: int, tmp: Path, rank: int, world: int) -> dict[str, dict]:
    """This rank's part of DCP's save and its RNG state; returns the manifest entries of the files it wrote."""
    dcp.save({**_train_state(run), "step": step}, checkpoint_id=tmp)
    torch.save(_rng_state(), tmp / f"rng-rank{rank}.pt")
    _fsync(tmp / f"rng-rank{rank}.pt")  # DCP flushes its own files; on a shared file system only the writer can
    return manifest.describe(tmp, manifest.share([p.name for p in tmp.iterdir() if p.is_file()], rank, world))


def _publish(run: Run, step: int, tokenizer: PreTrainedTokenizerBase, tmp: Path, final: Path,
             files: dict[str, dict], skipped: int) -> None:
    """Rank 0: export files, the marker with the manifest, the rename that makes it complete, pruning."""
    _write_export_files(run, step, tokenizer, tmp, files, skipped)
    tmp.rename(final)
    _fsync(final.parent)
    prune(final.parent, run.cfg.checkpoint.keep)


def _write_export_files(run: Run, step: int, tokenizer: PreTrainedTokenizerBase, folder: Path,
                        files: dict[str, dict], skipped: int) -> None:
    """HF config, tokenizer, then the marker with the resolved config and the manifest; flushed before the rename."""
    run.model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    exported = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in files)
    layout = run.layout
    meta = {"step": step, "world_size": layout.world_size,
            "mesh": layout.sizes(),
            "skipped_steps": skipped, "config": run.cfg.to_dict(),
            "files": {**files, **manifest.describe(folder, exported)}}
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


def resume(run: Run) -> tuple[int, int]:
    """Load the checkpoint ``checkpoint.resume`` chooses into ``run``; returns (its step, steps skipped so far).

    Every rank verifies its share of the manifest first. With ``auto``, a damaged checkpoint is
    renamed ``step-N.damaged`` with a warning and the next older one is tried; a damaged
    checkpoint named explicitly, or none intact, is a one-line error. (0, 0) starts fresh.
    """
    choice, candidates = _candidates(run.cfg)
    for path in candidates:
        problem = _damage(path)
        if problem is None:
            _check_same_model(path, run.cfg)
            return _load(run, path)
        _refuse_damaged(choice, path, problem)
        _set_aside(path, problem)
    if candidates:
        raise ConfigError(f"no checkpoint in {checkpoints_root(run.cfg)} is intact (see the warnings above); "
                          "move them away to start afresh")
    return 0, 0


def _set_aside(path: Path, problem: str) -> None:
    """Rank 0 renames a damaged checkpoint out of the way (kept for inspection), after every rank has read it."""
    if dist.get_rank() != 0:
        return
    aside = path.with_name(f"{path.name}.damaged")
    shutil.rmtree(aside, ignore_errors=True)
    path.rename(aside)
    print(f"shardwise: warning: checkpoint {path} is damaged ({problem}); renamed it {aside.name}, "
          "trying the next older one", file=sys.stderr, flush=True)


def _load(run: Run, path: Path) -> tuple[int, int]:
    """Model, optimizer, schedule and RNG from ``path``.

    RNG streams are per rank, so they are restored only on the world size that saved them; on
    another layout each rank's random draws differ anyway. shardwise itself draws none (init and
    data are seeded explicitly), so this matters only for randomness in the model, e.g. dropout.
    """
    state = {**_train_state(run), "step": -1}
    safeload.load(state, path)
    set_state_dict(run.model, run.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    meta = read_marker(path, str(path))
    if meta["world_size"] == dist.get_world_size():
        _set_rng_state(torch.load(path / f"rng-rank{dist.get_rank()}.pt", weights_only=True))
    return state["step"], meta.get("skipped_steps", 0)


def export(checkpoint: Path, out: Path) -> None:
    """Write a checkpoint as a Hugging Face folder (config, safetensors, tokenizer), in one process.

    The model is rebuilt from the checkpoint's own HF config with ``CausalLM``'s parameter names
    (the ``hf.`` prefix included), so DCP gathers the sharded tensors into it by name; HF's
    ``save_pretrained`` then writes ``hf`` with tied embeddings stored once.
    """
    read_marker(checkpoint, str(checkpoint))
    problem = _share_problem(checkpoint, 0, 1)
    if problem is not None:
        raise ConfigError(f"{checkpoint} is damaged ({problem}); export another checkpoint")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} is not empty; give a new or empty output folder")
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=False)
    if trained_own_head(checkpoint, config):  # both matrices trained: export what was trained, untied
        config.tie_word_embeddings = False
        print(f"shardwise: note: {checkpoint} trained lm_head apart from the tied embedding; exported untied, "
              "with both", file=sys.stderr, flush=True)
    model = build_meta_model(config)
    materialize(model, torch.device("cpu"))  # tied embeddings as one tensor, which save_pretrained stores once
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        safeload.load(state, checkpoint, no_dist=True)
    model.load_state_dict(state["model"])  # DCP's contract: loads into tensors in place, the module applies them
    model.config.use_cache = True  # the trainer turns the KV cache off; generation wants it back
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.hf.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=False).save_pretrained(tmp)
    _fsync_tree(tmp)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
