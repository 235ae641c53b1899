"""``shardwise {train,bench,plan,verify} [CONFIG.toml] [--section.key=value ...]``, ``shardwise export CKPT OUT``.

Outside torchrun, ``train`` and ``bench`` check the config, then start the needed local processes
themselves through ``torch.distributed.run``; under torchrun (or SLURM with MASTER_ADDR set) they
just run, after the same checks. ``plan`` starts no processes; ``verify`` always starts its own
CPU processes; ``export`` reads a checkpoint in this one process. A bad input is one line on
stderr (from rank 0 only) and exit code 2; a run that stops on purpose (a preemption signal, a
non-finite step, a hung rank, a failed save) says why in one line and exits with its own code
(``shardwise.faults``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from shardwise.config import Config, ConfigError, bench_config, load_config, parse_overrides, parse_signals
from shardwise.faults import Stop
from shardwise.launch import (
    AUTO_KEYS,
    cpu_world_size,
    default_tp,
    exit_finished_worker,
    gpu_plan,
    launch,
    leave_group,
    local_world_size,
    note_choices,
    preflight,
    refuse,
    resolve_auto,
    stopped,
    under_launcher,
    warn_memory,
    worker_args,
)

COMMANDS = {
    "train": "train a causal LM (default: tiny Qwen2 on 4 CPU processes)",
    "bench": "time training steps on synthetic tokens: tokens/s, MFU, peak memory",
    "plan": "show placements, memory and communication per device, and what will fail; no GPU, no processes",
    "verify": "check the layout numerically: a small model of the same architecture vs. one process, on CPU",
}


def _body(command: str) -> Callable[[Config], object]:
    """What a subcommand runs in each process; imported late so the launching process stays light."""
    if command == "bench":
        from shardwise.bench import bench

        return bench
    from shardwise.train import train

    return train


def _run_distributed(args: argparse.Namespace, argv: list[str], cfg: Config) -> int:
    """``train``/``bench``: the same checks on both paths, then run here (torchrun) or launch.

    ``train`` launched here forwards ``checkpoint.on_signal`` to its workers, gives them
    ``checkpoint.shutdown_timeout_s`` to save, and restarts them ``--max-restarts`` times.
    """
    restarts = getattr(args, "max_restarts", None)
    if under_launcher():
        if restarts is not None:
            raise ConfigError("--max-restarts is for shardwise's own launch; under torchrun, pass torchrun "
                              "--max-restarts=N")
        preflight(cfg, int(os.environ["WORLD_SIZE"]), args.command)
        cfg = resolve_auto(cfg, int(os.environ["WORLD_SIZE"]))
        note_choices(cfg, args.command)
        _body(args.command)(cfg)
        leave_group()
        return 0
    nproc = local_world_size(cfg)
    preflight(cfg, nproc, args.command)
    report = gpu_plan(cfg, nproc)  # one plan for both: 8.6 s for Llama-3-8B shapes on a 2xH100 host
    resolved = resolve_auto(cfg, nproc, report=report)
    # the workers take the launcher's choices rather than each planning again
    argv = [*argv, *(f"--parallel.{key}={getattr(resolved.parallel, key)}" for key in AUTO_KEYS
                     if getattr(resolved.parallel, key) != getattr(cfg.parallel, key))]
    cfg = resolved
    warn_memory(report)
    if args.command != "train":
        return launch("shardwise.cli", argv, nproc)
    return launch("shardwise.cli", worker_args(argv), nproc, max_restarts=restarts or 0,
                  signals=parse_signals(cfg.checkpoint.on_signal),
                  shutdown_timeout_s=cfg.checkpoint.shutdown_timeout_s)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    overrides = parse_overrides(_split_flags(args))
    cfg = load_config(args.config, overrides)
    if args.config is None and torch.cuda.is_available() and "parallel.tp" not in overrides:
        cfg = load_config(None, {**overrides, "parallel.tp": str(default_tp(cfg.parallel, torch.cuda.device_count()))})
    if args.command == "bench":
        cfg = bench_config(cfg)
    if args.command == "plan":
        from shardwise.plan import run_plan

        return run_plan(cfg, args.world_size or local_world_size(cfg), args.device_memory_gib, args.json)
    if args.command == "verify":
        if under_launcher():
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


def _add_train_flags(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument("--max-restarts", type=int, default=default,
                        help="restart all workers up to N times when one fails; they resume from the newest checkpoint")


OWN_FLAGS = {"plan": _add_plan_flags, "train": _add_train_flags}


def _split_flags(args: argparse.Namespace) -> list[str]:
    """Move the command's own flags given after the config file out of the overrides; returns the rest."""
    if args.command not in OWN_FLAGS:
        return args.overrides
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    OWN_FLAGS[args.command](parser, default=argparse.SUPPRESS)
    later, rest = parser.parse_known_args(args.overrides)
    vars(args).update(vars(later))
    if getattr(args, "world_size", None) is not None and args.world_size < 1:
        raise ConfigError(f"--world-size={args.world_size} must be >= 1")
    if getattr(args, "device_memory_gib", None) is not None and not args.device_memory_gib > 0:
        raise ConfigError(f"--device-memory-gib={args.device_memory_gib} must be > 0")
    if getattr(args, "max_restarts", None) is not None and args.max_restarts < 0:
        raise ConfigError(f"--max-restarts={args.max_restarts} must be >= 0")
    return rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="shardwise", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", nargs="?", help="TOML config file")
        if name in OWN_FLAGS:
            OWN_FLAGS[name](p)
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
    except Stop as stop:
        return stopped(stop)


if __name__ == "__main__":
    code = main()
    if under_launcher():  # a worker (python -m shardwise.cli under torchrun) that finished or refused its run
        exit_finished_worker(code)
    sys.exit(code)
