"""``shardwise {train,bench,plan,verify} [CONFIG.toml] [--section.key=value ...]``, ``shardwise export CKPT OUT``.

Outside torchrun, ``train`` and ``bench`` check the config, then start the needed local processes
themselves through ``torch.distributed.run``; under torchrun (or SLURM with MASTER_ADDR set) they
just run, after the same checks. ``plan`` starts no processes; ``verify`` always starts its own
CPU processes; ``export`` reads a checkpoint in this one process. A bad input is one line on
stderr (from rank 0 only) and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from shardwise.config import Config, ConfigError, load_config, parse_overrides

CPU_DP_SHARD = 2  # what dp_shard=-1 means when shardwise starts CPU processes itself
CONFIG_ERROR_EXIT = 2
# How long ranks other than 0 wait before exiting on a config error, so that the launcher, which
# stops every worker once one has exited, does not stop rank 0 before it has printed the error.
QUIET_RANK_GRACE_S = 3.0

COMMANDS = {
    "train": "train a causal LM (default: tiny Qwen2 on 4 CPU processes)",
    "bench": "time training steps on synthetic tokens: tokens/s, MFU, peak memory",
    "plan": "show placements, memory and communication per device, and what will fail; no GPU, no processes",
    "verify": "check the layout numerically: a small model of the same architecture vs. one process, on CPU",
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


def cpu_world_size(cfg: Config) -> int:
    """``dp_replicate x dp_shard x tp`` with ``dp_shard=-1`` counting as ``CPU_DP_SHARD``."""
    p = cfg.parallel
    return p.dp_replicate * p.tp * (CPU_DP_SHARD if p.dp_shard == -1 else p.dp_shard)


def local_world_size(cfg: Config) -> int:
    """Processes to start on this machine: every GPU, or the configured CPU layout."""
    return torch.cuda.device_count() if torch.cuda.is_available() else cpu_world_size(cfg)


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
    get_plan(config, cfg.parallel.sequence_parallel, cfg.parallel.loss_parallel)
    check_divisibility(config, cfg, layout.tp)
    if cfg.model.path:
        checkpoint_files(cfg.model.path)
    if command == "train":
        resume_dir(cfg)


def _quiet_launcher_logs() -> None:
    """Silence torch elastic's own log lines: shardwise reports a failed worker in one line itself."""
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def launch(module: str, args: list[str], nproc: int) -> int:
    """Run ``python -m module args`` in ``nproc`` local processes through torch.distributed.run.

    Returns 0, or ``CONFIG_ERROR_EXIT`` when a worker refused the config (its rank 0 has printed
    why), or 1 with one line naming the worker that crashed.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if not torch.cuda.is_available():
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    _quiet_launcher_logs()
    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "--module", module, *args])
    except ChildFailedError as err:
        if any(f.exitcode == CONFIG_ERROR_EXIT for f in err.failures.values()):
            return CONFIG_ERROR_EXIT
        rank, first = err.get_first_failure()
        cause = f"signal {first.signal_name()}" if first.exitcode < 0 else f"exit code {first.exitcode}"
        print(f"shardwise: error: worker {rank} failed with {cause}; its output above says why", file=sys.stderr)
        return 1
    return 0


def _body(command: str) -> Callable[[Config], object]:
    """What a subcommand runs in each process; imported late so the launching process stays light."""
    if command == "bench":
        from shardwise.bench import bench

        return bench
    from shardwise.train import train

    return train


def _run_distributed(args: argparse.Namespace, argv: list[str], cfg: Config) -> int:
    """``train``/``bench``: the same checks on both paths, then run here (torchrun) or launch."""
    if _under_launcher():
        preflight(cfg, int(os.environ["WORLD_SIZE"]), args.command)
        _body(args.command)(cfg)
        return 0
    nproc = local_world_size(cfg)
    preflight(cfg, nproc, args.command)
    return launch("shardwise.cli", argv, nproc)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    overrides = parse_overrides(_split_flags(args))
    if args.config is None and torch.cuda.is_available():
        overrides.setdefault("parallel.tp", str(min(2, torch.cuda.device_count())))
    cfg = load_config(args.config, overrides)
    if args.command == "plan":
        from shardwise.plan import run_plan

        return run_plan(cfg, args.world_size or local_world_size(cfg), args.device_memory_gib, args.json)
    if args.command == "verify":
        if _under_launcher():
            raise ConfigError("run shardwise verify without torchrun; it starts its own CPU processes")
        from shardwise.verify import run_verify

        return run_verify(cfg, cpu_world_size(cfg))
    return _run_distributed(args, argv, cfg)


def _export(args: argparse.Namespace) -> int:
    """No launch: DCP reads every rank's shards of the checkpoint into this one process."""
    from shardwise.checkpoint import export

    export(Path(args.checkpoint), Path(args.out))
    print(f"shardwise: exported {args.checkpoint} to {args.out}")
    return 0


def _add_plan_flags(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument("--world-size", type=int, default=default, help="devices (default: what train would start)")
    parser.add_argument("--device-memory-gib", type=float, default=default, help="flag layouts that need more")
    parser.add_argument("--json", action="store_true", default=default or False, help="print one JSON object")


def _split_flags(args: argparse.Namespace) -> list[str]:
    """Move ``plan``'s own flags given after the config file out of the overrides; returns the rest."""
    if args.command != "plan":
        return args.overrides
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    _add_plan_flags(parser, default=argparse.SUPPRESS)
    later, rest = parser.parse_known_args(args.overrides)
    vars(args).update(vars(later))
    if args.world_size is not None and args.world_size < 1:
        raise ConfigError(f"--world-size={args.world_size} must be >= 1")
    return rest


def refuse(err: ConfigError) -> int:
    """One line from rank 0 (or the only process), then ``CONFIG_ERROR_EXIT`` on every rank."""
    import torch.distributed as dist

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"shardwise: error: {err}", file=sys.stderr, flush=True)
    else:
        time.sleep(QUIET_RANK_GRACE_S)
    if dist.is_initialized():
        dist.destroy_process_group()
    return CONFIG_ERROR_EXIT


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="shardwise", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", nargs="?", help="TOML config file")
        if name == "plan":
            _add_plan_flags(p)
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
        return refuse(err)


if __name__ == "__main__":
    sys.exit(main())
