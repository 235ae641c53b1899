"""``shardwise {train,bench} [CONFIG.toml] [--section.key=value ...]``, ``shardwise export CKPT OUT``.

Outside torchrun the command checks the config, then starts the needed local processes itself
through ``torch.distributed.run``; under torchrun (or SLURM with MASTER_ADDR set) it just runs.
``train`` and ``bench`` take the same config and go through the same checks and launch; ``export``
needs neither: it reads a checkpoint in this one process.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from shardwise.config import Config, ConfigError, load_config, parse_overrides

CPU_DP_SHARD = 2  # what dp_shard=-1 means when shardwise starts CPU processes itself

COMMANDS = {
    "train": "train a causal LM (default: tiny Qwen2 on 4 CPU processes)",
    "bench": "time training steps on synthetic tokens: tokens/s, MFU, peak memory",
}


def _under_launcher() -> bool:
    """True inside torchrun; maps SLURM's variables to torchrun's when only SLURM set them."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return True
    if "SLURM_PROCID" in os.environ and "MASTER_ADDR" in os.environ:
        os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
        os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_NTASKS"])
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
        os.environ.setdefault("MASTER_PORT", "29500")
        return True
    return False


def local_world_size(cfg: Config) -> int:
    """Processes to start on this machine: every GPU, or the configured CPU layout."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    p = cfg.parallel
    return p.dp_replicate * p.tp * (CPU_DP_SHARD if p.dp_shard == -1 else p.dp_shard)


def preflight(cfg: Config, world_size: int, command: str) -> None:
    """Everything checkable without processes: layout, architecture, divisibility, lengths, weight files, resume."""
    from shardwise.checkpoint import resume_dir
    from shardwise.load import checkpoint_files
    from shardwise.mesh import resolve_layout
    from shardwise.model import hf_config
    from shardwise.parallelize import check_divisibility
    from shardwise.plans import get_plan

    layout = resolve_layout(cfg.parallel, world_size)
    config = hf_config(cfg.model)
    get_plan(config.model_type, cfg.parallel.sequence_parallel, cfg.parallel.loss_parallel)
    check_divisibility(config, cfg, layout.tp)
    if cfg.model.path:
        checkpoint_files(cfg.model.path)
    if command == "train":
        resume_dir(cfg)


def _launch(argv: list[str], nproc: int) -> int:
    """Re-run this command in ``nproc`` local processes through torch.distributed.run."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if not torch.cuda.is_available():
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = ["--standalone", f"--nproc-per-node={nproc}", "--module", "shardwise.cli", *argv]
    try:
        torchrun(args)
    except ChildFailedError as err:
        print(f"shardwise: error: a worker process failed ({next(iter(err.failures.values())).message})",
              file=sys.stderr)
        return 1
    return 0


def _body(command: str) -> Callable[[Config], object]:
    """What a subcommand runs in each process; imported late so the launching process stays light."""
    if command == "bench":
        from shardwise.bench import bench

        return bench
    from shardwise.train import train

    return train


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    overrides = parse_overrides(args.overrides)
    if args.config is None and torch.cuda.is_available():
        overrides.setdefault("parallel.tp", str(min(2, torch.cuda.device_count())))
    cfg = load_config(args.config, overrides)
    if _under_launcher():
        _body(args.command)(cfg)
        return 0
    nproc = local_world_size(cfg)
    preflight(cfg, nproc, args.command)
    return _launch(argv, nproc)


def _export(args: argparse.Namespace) -> int:
    """No launch: DCP reads every rank's shards of the checkpoint into this one process."""
    from shardwise.checkpoint import export

    export(Path(args.checkpoint), Path(args.out))
    print(f"shardwise: exported {args.checkpoint} to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="shardwise", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", nargs="?", help="TOML config file")
        p.add_argument("overrides", nargs=argparse.REMAINDER, help="--section.key=value ...")
    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face model folder (one process)")
    p.add_argument("checkpoint", help="a checkpoints/step-N folder")
    p.add_argument("out", help="the new Hugging Face folder; must not exist or be empty")
    args, rest = parser.parse_known_args(argv)
    if args.command == "export":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    else:
        if args.config and args.config.startswith("--"):
            args.overrides, args.config = [args.config, *args.overrides], None
        args.overrides = [*rest, *args.overrides]
    try:
        return _export(args) if args.command == "export" else _run(args, argv)
    except ConfigError as err:
        print(f"shardwise: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
