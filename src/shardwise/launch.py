"""Starting workers: the checks that need no processes (``preflight``), torchrun in-process (``launch``),
and how a worker's process ends when it refuses a config or stops on purpose (``refuse``, ``stopped``).

``shardwise.cli`` (``train``, ``bench``) and ``shardwise.verify`` both launch through here, so
neither imports the other.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from shardwise.config import Config, ConfigError, ParallelConfig
from shardwise.faults import HUNG_EXIT, NONFINITE_EXIT, PREEMPTED_EXIT, SAVE_FAILED_EXIT, Stop, say_line

CPU_DP_SHARD = 2  # what dp_shard=-1 means when shardwise starts CPU processes itself
CONFIG_ERROR_EXIT = 2
# Exit codes of workers that printed why they stopped (rank 0, or each rank for a hang): the launcher adds nothing.
SELF_EXPLAINED = (CONFIG_ERROR_EXIT, NONFINITE_EXIT, HUNG_EXIT, SAVE_FAILED_EXIT, PREEMPTED_EXIT)
# How long ranks other than 0 wait before exiting on a config error, so that the launcher, which
# stops every worker once one has exited, does not stop rank 0 before it has printed the error.
QUIET_RANK_GRACE_S = 3.0
# How long a worker that has finished waits for its process group to be destroyed before it exits without it.
LEAVE_GRACE_S = 60.0
# What torchrun's agent forwards to its workers by default (--signals-to-handle).
TORCHRUN_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
# Tokens per micro-batch (and CP rank) at which async TP was measured slower than plain TP: the host set the pace.
HOST_BOUND_TOKENS = 4096


def under_launcher() -> bool:
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
    """``dp_replicate x dp_shard x cp x tp`` with ``dp_shard=-1`` counting as ``CPU_DP_SHARD``."""
    p = cfg.parallel
    return p.dp_replicate * p.cp * p.tp * (CPU_DP_SHARD if p.dp_shard == -1 else p.dp_shard)


def rank_zero() -> bool:
    """Whether this process speaks for the job: rank 0 under a launcher, or the launcher (the only process) itself."""
    return int(os.environ.get("RANK", "0")) == 0


def default_tp(p: ParallelConfig, gpus: int) -> int:
    """``parallel.tp`` for a run without a config file on ``gpus`` GPUs: the default job's 2 where ``cp`` and
    ``dp_replicate`` leave room for it, else 1, so that ``--parallel.cp=2`` on 2 GPUs runs instead of being
    refused for a ``tp`` its user never set."""
    return 2 if gpus % (2 * p.cp * p.dp_replicate) == 0 else 1


def local_world_size(cfg: Config) -> int:
    """Processes to start on this machine: every GPU, or the configured CPU layout."""
    return torch.cuda.device_count() if torch.cuda.is_available() else cpu_world_size(cfg)


def preflight(cfg: Config, world_size: int, command: str) -> None:
    """Everything checkable without processes: layout, architecture, divisibility, lengths, weight files,
    resume, and for ``train`` whether ``output.dir`` is writable and has room for the checkpoints."""
    from shardwise.checkpoint import check_output_dir, resume_dir
    from shardwise.flex import uses_flex
    from shardwise.load import checkpoint_files
    from shardwise.mesh import resolve_layout
    from shardwise.model import hf_config
    from shardwise.parallelize import check_cudagraphs, check_divisibility
    from shardwise.plans import get_plan
    from shardwise.router import coefficient

    layout = resolve_layout(cfg.parallel, world_size)
    config = hf_config(cfg.model)
    get_plan(config, cfg.parallel.sequence_parallel, cfg.parallel.loss_parallel, cfg.parallel.attention())
    check_divisibility(config, cfg, layout.tp, layout.dp)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    check_cudagraphs(cfg, config, layout, device_type)
    coefficient(cfg, config)
    uses_flex(cfg, config, device_type)
    if cfg.model.path:
        checkpoint_files(cfg.model.path)
    if command == "train":
        check_output_dir(cfg, resume_dir(cfg))


def note_choices(cfg: Config, command: str) -> None:
    """From rank 0 (of shardwise's own launch too): one line for each setting that would otherwise cost speed
    without a word: ``parallel.cp_exchange=ring`` where it cannot carry some of the attention (``model.ring_note``;
    training only, as bench's rows are one document each), async TP at small micro-batches, and (training) a mixture
    of experts without a load-balancing loss."""
    from shardwise.model import ring_note

    if not rank_zero():
        return
    train = command == "train"
    lines = (ring_note(cfg) if train else None, async_tp_note(cfg), router_loss_note(cfg) if train else None)
    for line in filter(None, lines):
        print(f"shardwise: note: {line}", file=sys.stderr, flush=True)


def router_loss_note(cfg: Config) -> str | None:
    """A mixture of experts left to train without its routers' load-balancing loss (``train.router_aux_loss=auto``
    where its config sets no ``output_router_logits``, as the released Mixtral, OLMoE and Qwen-MoE configs do, so
    transformers would add none either): nothing then keeps the routers from favouring a few experts, which a run
    from scratch should hear before it starts."""
    from shardwise.model import hf_config
    from shardwise.plans.decoder import num_experts
    from shardwise.router import coefficient

    config = hf_config(cfg.model)
    if cfg.train.router_aux_loss != "auto" or not num_experts(config) or coefficient(cfg, config):
        return None
    return ("the mixture of experts trains without its routers' load-balancing loss (its config sets no "
            "output_router_logits, so transformers would add none either); --train.router_aux_loss=0.01 adds it")


def async_tp_note(cfg: Config) -> str | None:
    """Async TP adds host work to every block (2.0 -> 3.3 ms per compiled block call, Llama-3-8B shapes on 2xH100),
    which is free where the GPU sets the pace and not where the host does: at 4,096 tokens per micro-batch it ran
    0.83x of plain TP, at 8,192 and 32,768 1.01x (BENCHMARKS.md, sessions 22-23)."""
    tokens = cfg.train.micro_batch_size * cfg.train.seq_len // cfg.parallel.cp
    if cfg.parallel.async_tp and tokens <= HOST_BOUND_TOKENS:
        return (f"parallel.async_tp=true at {tokens} tokens per micro-batch: at {HOST_BOUND_TOKENS} it ran 0.83x of "
                "plain tensor parallelism on 2xH100 (Llama-3-8B shapes: the step waits on the host, BENCHMARKS.md); "
                "raise train.micro_batch_size as far as shardwise plan says fits, or set parallel.async_tp=false")
    return None


def gpu_plan(cfg: Config, world_size: int, device_memory_gib: float | None = None) -> dict[str, Any] | None:
    """``shardwise plan`` of this run for this machine's GPU (or ``device_memory_gib``), made once before the
    workers start for both ``resolve_auto`` and ``warn_memory``: None with neither; ``{"error": …}`` where the
    plan itself failed, which they note and go on from (the estimate is advice, never a reason to stop)."""
    if device_memory_gib is None and not torch.cuda.is_available():
        return None
    from shardwise.plan import make_plan

    try:
        return make_plan(cfg, world_size, device_memory_gib)
    except Exception as e:  # noqa: BLE001 - a run that preflight accepted goes on without an estimate
        return {"error": f"{type(e).__name__}: {e}"}


def warn_memory(report: dict[str, Any] | None) -> None:
    """On a GPU machine, before starting workers: say so when ``shardwise plan`` (``report``, from ``gpu_plan``)
    expects the run not to fit, rather than let every rank load the model and then run out of memory. A warning,
    not a refusal: the estimate is an upper bound (docs/plan-verify.md)."""
    if report is None:
        return
    from shardwise.plan import memory_warning

    line = (f"shardwise: note: no memory estimate before launch ({report['error']}); see shardwise plan"
            if "error" in report else memory_warning(report))
    if line:
        print(line, file=sys.stderr, flush=True)


def resolve_auto(cfg: Config, world_size: int, device_memory_gib: float | None = None,
                 report: dict[str, Any] | None = None) -> Config:
    """The settings whose ``auto`` depends on this machine's GPUs, made by ``shardwise plan`` (``report``, else one
    made here); rank 0 (or the launching process) says what each became. Explicit settings and CPU runs stay as
    they are (``ParallelConfig.reshards`` and ``attention`` read an unresolved ``auto`` as the choice that needs
    no estimate). ``device_memory_gib`` plans for that much memory instead of this GPU.

    - ``parallel.reshard_after_forward``: FSDP keeps each block gathered from its forward to its backward where the
      plan's estimate of that fits (1.02-1.05x the step at dp_shard=2, BENCHMARKS.md), and frees it otherwise.
    - ``parallel.tp_attention``: each TP rank attends over its own rows where that layout runs and fits
      (``plan.attention_choice``), else heads are split.
    """
    p = cfg.parallel
    if all(getattr(p, key) != "auto" for key in AUTO_KEYS):
        return cfg
    report = report if report is not None else gpu_plan(cfg, world_size, device_memory_gib)
    if report is None:
        return cfg
    if "error" in report:  # without an estimate, the choices that need none
        why = f"no memory estimate ({report['error']})"
        choices = {"reshard_after_forward": True, "tp_attention": "heads" if p.tp > 1 else None}
    else:
        why = f"by shardwise plan for {report['device_memory_gib']:.1f} GiB"
        choices = {key: report.get(key) for key in AUTO_KEYS}
    changes = {key: str(value).lower() for key, value in choices.items()
               if getattr(p, key) == "auto" and value is not None}  # None: no FSDP, no TP
    if rank_zero():
        for key, value in changes.items():
            print(f"shardwise: note: {_AUTO_NOTES[key][value]} (parallel.{key}=auto -> {value}, "
                  f"{report.get('tp_attention_why', why) if key == 'tp_attention' else why})", file=sys.stderr,
                  flush=True)
    return dataclasses.replace(cfg, parallel=dataclasses.replace(p, **changes)) if changes else cfg


AUTO_KEYS = ("reshard_after_forward", "tp_attention")  # the ParallelConfig settings resolve_auto resolves
_AUTO_NOTES = {
    "reshard_after_forward": {"true": "FSDP blocks freed after forward",
                              "false": "FSDP blocks kept gathered from forward to backward"},
    "tp_attention": {"sequences": "each TP rank attends over its own whole rows, with every head",
                     "heads": "attention heads split over TP ranks"},
}


def _quiet_launcher_logs() -> None:
    """Silence torch elastic's own log lines: shardwise reports a failed worker in one line itself."""
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _torchrun_has(flag: str) -> bool:
    """Whether this torch's torchrun knows ``flag`` (``--shutdown-timeout`` is new in torch 2.13)."""
    from torch.distributed.run import get_args_parser

    return any(flag in action.option_strings for action in get_args_parser()._actions)


def launch(module: str, args: list[str], nproc: int, max_restarts: int = 0, signals: Sequence[signal.Signals] = (),
           shutdown_timeout_s: int | None = None) -> int:
    """Run ``python -m module args`` in ``nproc`` local processes through torch.distributed.run.

    This process becomes torchrun's agent: on SIGTERM, SIGINT, SIGHUP, SIGQUIT and ``signals`` it
    forwards the signal to every worker, waits ``shutdown_timeout_s`` (torchrun's default: 30 s)
    for them to exit, then kills them with SIGKILL; when a worker fails it restarts the whole
    group up to ``max_restarts`` times, each group with a TCPStore of its own: torchrun's shared
    one keeps the previous group's addresses, which a restarted group then fails to connect to. Returns 0; 128 + the
    signal with one line naming a worker that crashed (the others then stop on their own, "another rank died or
    hung"; a gloo thread's general protection fault did so once in a fresh clone's quick start, 2026-11-27); the exit
    code of workers that stopped on purpose (``SELF_EXPLAINED``: they printed why); ``PREEMPTED_EXIT`` when one of
    ``signals`` stopped the job; or 1 with one line naming the worker that failed (128 + the signal for a signal).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if not torch.cuda.is_available():
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    _quiet_launcher_logs()
    if max_restarts:  # a restarted group must not reuse the agent's TCPStore (pytorch/pytorch#135712)
        os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    forwarded = ",".join(dict.fromkeys([*TORCHRUN_SIGNALS, *(s.name for s in signals)]))
    flags = [f"--max-restarts={max_restarts}"]
    if _torchrun_has("--signals-to-handle"):
        flags.append(f"--signals-to-handle={forwarded}")
    if shutdown_timeout_s is not None:
        if _torchrun_has("--shutdown-timeout"):
            flags.append(f"--shutdown-timeout={shutdown_timeout_s}")
        else:  # torch < 2.13 has no flag; the variable is what the flag defaults to where it exists
            os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(shutdown_timeout_s))
    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", *flags, "--module", module, *args])
    except ChildFailedError as err:
        died = next(((rank, f) for rank, f in sorted(err.failures.items()) if _died_on_its_own(f.exitcode)), None)
        if died is not None:  # the root cause: the others stopped because it did (and may have said so)
            rank, failure = died
            print(f"shardwise: error: worker {rank} died of {failure.signal_name()} (its output above, if any, says "
                  "why); the other workers stopped because of it", file=sys.stderr)
            return 128 - failure.exitcode
        explained = next((f.exitcode for f in err.failures.values() if f.exitcode in SELF_EXPLAINED), None)
        if explained is not None:
            return explained
        rank, first = err.get_first_failure()
        cause = f"signal {first.signal_name()}" if first.exitcode < 0 else f"exit code {first.exitcode}"
        print(f"shardwise: error: worker {rank} failed with {cause}; its output above says why", file=sys.stderr)
        return 1
    except SignalException as err:  # the workers got the signal too and have stopped (or were killed)
        if err.sigval in signals:
            return PREEMPTED_EXIT
        print(f"shardwise: stopped by {err.sigval.name}", file=sys.stderr)
        return 128 + err.sigval
    return 0


def _died_on_its_own(exitcode: int) -> bool:
    """A worker that crashed (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, ...): killed by a signal that neither torchrun's
    teardown of the group sends (SIGTERM, then SIGKILL to what outlives its shutdown timeout) nor a preemption."""
    return exitcode < 0 and -exitcode not in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP)


def leave_group(code: int = 0) -> None:
    """Destroy the process group before the interpreter exits: left to finalization, gloo's threads may
    still hold tensors whose release then aborts the process (SIGABRT after a finished run).

    Destroying it can also never return: NCCL waits forever for a communicator that something still holds (CUDA
    graphs that captured its collectives did, pytorch/pytorch#115388, until ``Run.close``). The run has ended and
    closed its files by now, so after ``LEAVE_GRACE_S`` the process says so and exits with ``code`` rather than sit."""
    if not dist.is_initialized():
        return
    timer = threading.Timer(LEAVE_GRACE_S, _exit_without_group, (code,))
    timer.daemon = True
    timer.start()
    dist.destroy_process_group()
    timer.cancel()


def _exit_without_group(code: int) -> None:
    say_line(f"shardwise: warning: rank {os.environ.get('RANK', '0')}: the process group was not destroyed within "
             f"{LEAVE_GRACE_S:g} s after the run ended; exiting without it")
    exit_finished_worker(code)


def exit_finished_worker(code: int = 0) -> NoReturn:
    """End a worker whose run finished (or refused) and left the group, without the interpreter's finalization.

    ``leave_group`` is not always enough: gloo's threads can still hold tensors whose release during
    finalization aborts the process ("terminate called without an active exception", SIGABRT: seen after
    a finished 4-process CPU run under load, and in 2 of 4 runs of ``tests/test_verify.py`` from verify's
    2-process workers; and in CI after a worker had refused empty data with its one line), and the
    launcher then reports a failed run instead of the worker's ``code``. By now every file is closed
    (metrics, TensorBoard, checkpoints); only stdio may hold buffered lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def refuse(err: ConfigError) -> int:
    """One line from rank 0 (or the only process), then ``CONFIG_ERROR_EXIT`` on every rank."""
    if rank_zero():
        print(f"shardwise: error: {err}", file=sys.stderr, flush=True)
    else:
        time.sleep(QUIET_RANK_GRACE_S)
    leave_group(CONFIG_ERROR_EXIT)
    return CONFIG_ERROR_EXIT


def stopped(stop: Stop) -> int:
    """A run that every rank ended together, on purpose: rank 0 says why, then all leave the group at once."""
    if rank_zero():
        print(f"shardwise: {stop}", file=sys.stderr, flush=True)
    if dist.is_initialized():
        dist.barrier()
    leave_group(stop.code)
    return stop.code


def worker_args(argv: list[str]) -> list[str]:
    """The command line for the workers: the launcher's own ``--max-restarts`` removed."""
    out, it = [], iter(argv)
    for arg in it:
        if arg == "--max-restarts":
            next(it, None)
        elif not arg.startswith("--max-restarts="):
            out.append(arg)
    return out
