"""``shardwise bench``: time training steps of a real run on synthetic tokens.

The run is built exactly as ``shardwise train`` builds it (``build_run``), and each step is the
trainer's own ``forward_backward`` + ``optimizer_step``, so the numbers describe training, not
a stripped-down loop. Only the data differs: seeded random tokens, so no corpus loading or
tokenization cost is measured and any vocabulary size works. Throughput and MFU use the one
formula in ``shardwise.metrics``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import transformers

from shardwise.collect import Collector
from shardwise.config import Config
from shardwise.corpus import Documents
from shardwise.data import Batch, StepBatches, TokenWindows
from shardwise.metrics import device_peak_flops, flops_per_token, mfu, peak_mem_gib, peak_reserved_gib
from shardwise.model import flop_params, num_params
from shardwise.profile import describe, profile_step
from shardwise.run import Run, build_run, compute_dtype
from shardwise.train import forward_backward, optimizer_step


def synthetic_batches(run: Run) -> list[Batch]:
    """This rank's micro-batches of one step, drawn from seeded random tokens.

    Random tokens go through the trainer's own ``StepBatches`` split, so every rank gets
    ``micro_batch x seq_len`` batches and a bad batch size fails with the trainer's message.
    With ``bench.document_len`` they are cut into documents and packed as ``data.packing`` packs
    them, so rows hold document boundaries and attention takes the packed path.
    """
    t = run.cfg.train
    gen = torch.Generator().manual_seed(t.seed)
    tokens = torch.randint(run.model.config.vocab_size, (t.global_batch_size * t.seq_len + 1,), generator=gen)
    windows = TokenWindows(Documents.from_tokens(tokens, document_lengths(run.cfg.bench.document_len, len(tokens),
                                                                          t.seed)), t.seq_len, t.seed)
    split = StepBatches(windows, t.global_batch_size, t.micro_batch_size, run.meshes.dp.get_local_rank(), run.layout.dp)
    return split(0)


def document_lengths(mean: int, tokens: int, seed: int) -> np.ndarray | None:
    """Seeded document lengths, uniform in ``1..2·mean-1`` and enough to cover ``tokens``; None for ``mean`` 0
    (the stream is one document)."""
    if mean == 0:
        return None
    return np.random.default_rng(seed).integers(1, 2 * mean, size=tokens // mean * 2 + 1)


def timed_step(run: Run, batches: list[Batch]) -> float:
    """Seconds of one full optimizer step; on GPU, synchronized so queued kernels are counted."""
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    optimizer_step(run, forward_backward(run, batches))
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def slowest_rank(times: list[float], device: torch.device) -> list[float]:
    """Per-step maximum over ranks: a step is only as fast as its slowest rank."""
    t = torch.tensor(times, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def measure(run: Run) -> list[float]:
    """Run ``bench.warmup`` uncounted steps (compilation, allocator, NCCL setup), then time ``bench.steps``; garbage
    is collected between steps as training collects it (``shardwise.collect``)."""
    batches, collector, times = synthetic_batches(run), Collector(run.cfg.train.gc_every), []
    try:
        for i in range(run.cfg.bench.warmup + run.cfg.bench.steps):
            if i == run.cfg.bench.warmup and run.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(run.device)  # report the steady-state peak, not warmup's
            times.append(timed_step(run, batches))
            collector.step()
    finally:
        collector.close()
    return slowest_rank(times[run.cfg.bench.warmup:], run.device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def source_digest(root: Path = Path(__file__).parent) -> str:
    """12 hex digits of a SHA-256 over the package's Python files (their paths and bytes): the record names the code
    that ran without a git checkout (device machines get copies of the tree). Two rows meant to compare trees once
    ran the same one, unseen, because a script put another ``src`` first on ``PYTHONPATH`` (BENCHMARKS.md,
    session 27)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def versions() -> dict[str, str | None]:
    """What a throughput number depends on besides the config: the code (``source_digest``) and its stack; cuda and
    nccl are null on CPU builds."""
    nccl = None
    if torch.cuda.is_available() and dist.is_nccl_available():
        v = torch.cuda.nccl.version()
        nccl = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    return {"shardwise": source_digest(), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda, "nccl": nccl}


def summarize(run: Run, times: list[float]) -> dict[str, Any]:
    """The benchmark record: configuration, layout, throughput, MFU, memory and environment."""
    cfg, layout, c = run.cfg, run.layout, run.model.config
    median = statistics.median(times)
    tps = cfg.train.global_batch_size * cfg.train.seq_len / median
    per_device = tps / layout.world_size
    n_flop = flop_params(run.model)
    flops_token = flops_per_token(n_flop, c.num_hidden_layers, c.hidden_size, cfg.train.seq_len)
    return {
        "preset": None if cfg.model.path else cfg.model.preset,
        "model_type": c.model_type,
        "num_params": num_params(run.model),
        "flop_params": n_flop,
        "layout": {**layout.sizes(), "world_size": layout.world_size},
        "seq_len": cfg.train.seq_len,
        "global_batch_size": cfg.train.global_batch_size,
        "micro_batch_size": cfg.train.micro_batch_size,
        "dtype": str(compute_dtype(cfg, run.device)).removeprefix("torch."),
        "activation_checkpointing": cfg.train.activation_checkpointing,
        "compile": cfg.train.compiles(run.device.type),
        "cudagraphs": cfg.train.cudagraphs,
        "sequence_parallel": cfg.parallel.shards_tokens(),
        "loss_parallel": run.loss_parallel,
        "reshard_after_forward": cfg.parallel.reshards() if layout.dp_cp > 1 else None,  # in effect only with FSDP
        "tp_attention": cfg.parallel.attention() if layout.tp > 1 else None,  # in effect only with TP
        "document_len": cfg.bench.document_len,
        "packed_attention": "flex" if run.model.block_masks else "mask",  # how rows with a boundary attend
        "step_time_s_median": median,
        "step_times_s": times,
        "tokens_per_s": tps,
        "tokens_per_s_per_device": per_device,
        "mfu": mfu(per_device, flops_token, device_peak_flops(run.device)),
        "peak_mem_gib": peak_mem_gib(run.device),
        "peak_reserved_gib": peak_reserved_gib(run.device),
        "device": device_name(run.device),
        "versions": versions(),
        "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF") if run.device.type == "cuda" else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _or_na(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def print_table(result: dict[str, Any], path: Path) -> None:
    layout = result["layout"]
    rows = [
        ("model", f"{result['preset'] or result['model_type']} ({result['num_params']:,} params)"),
        ("layout", " ".join(f"{k}={v}" for k, v in layout.items() if k != "world_size")
                   + f" on {layout['world_size']} x {result['device']}"),
        ("batch", f"{result['global_batch_size']} x {result['seq_len']} tokens, {result['dtype']}"
                  + (f", documents of ~{result['document_len']} ({result['packed_attention']})"
                     if result["document_len"] else "")),
        ("step time (median)", f"{result['step_time_s_median']:.4f} s over {len(result['step_times_s'])} steps"),
        ("tokens/s", f"{result['tokens_per_s']:,.0f}"),
        ("tokens/s/device", f"{result['tokens_per_s_per_device']:,.0f}"),
        ("MFU", _or_na(result["mfu"], ".1%")),
        ("peak memory (GiB)", _or_na(result["peak_mem_gib"], ".2f")),
        *(describe(result["profile"], result["compile"], result["cudagraphs"]) if result.get("profile") else []),
        ("written to", str(path)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows), flush=True)


def bench(cfg: Config) -> dict[str, Any]:
    """Benchmark in every rank; rank 0 prints the table and writes the JSON. Returns the record."""
    run = build_run(cfg)
    try:
        result = summarize(run, measure(run))
        if cfg.bench.profile:
            batches = synthetic_batches(run)
            result["profile"] = profile_step(lambda: timed_step(run, batches), Path(cfg.output.dir), dist.get_rank(),
                                             run.device.type == "cuda")
    finally:
        run.close()
    if dist.get_rank() == 0:
        path = Path(cfg.bench.out) if cfg.bench.out else Path(cfg.output.dir) / "bench.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print_table(result, path)
    return result
