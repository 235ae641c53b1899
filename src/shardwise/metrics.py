"""Throughput, MFU and the per-step metrics file.

MFU (one formula everywhere, also in ``shardwise bench``)::

    flops_per_token = 6 * N + 12 * L * H * S
    MFU = tokens_per_s_per_device * flops_per_token / peak_flops_per_device

N counts every matmul weight with lm_head once and not the embedding lookup, and of a mixture of
experts' routed experts the ``num_experts_per_tok`` a token runs through (``flop_params``); L = layers,
H = hidden size, S = sequence length (the attention score and value matmuls, forward and backward,
without causal halving). Peak is the dense bf16 rate of the device:
989 TFLOP/s for H100 and H200. On CPU, MFU is null.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12}


def flops_per_token(n_params: int, layers: int, hidden: int, seq_len: int) -> float:
    return 6.0 * n_params + 12.0 * layers * hidden * seq_len


def device_peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of a known GPU; None on CPU or an unknown GPU (MFU is then null)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def mfu(tokens_per_s_per_device: float, flops_token: float, peak: float | None) -> float | None:
    return None if peak is None else tokens_per_s_per_device * flops_token / peak


def peak_mem_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def peak_reserved_gib(device: torch.device) -> float | None:
    """What the caching allocator held at most: tensors, free cached blocks and CUDA graphs' pools, whose memory a
    replay reuses without allocating (``shardwise.graphs``), so ``peak_mem_gib`` does not count it."""
    return torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None


# Per-step record keys that also go to TensorBoard (under ``output.dir/tb``), when not null.
TB_SCALARS = ("loss", "val_loss", "router_loss", "lr", "grad_norm", "tokens_per_s", "tokens_per_s_per_device", "mfu",
              "peak_mem_gib", "skipped_steps")


def run_summary(records: list[dict], world_size: int) -> dict:
    """What a finished run reports once: steps, tokens, wall time, mean throughput, final loss.

    The mean throughput is this process's tokens over its loop's wall time, so slow first steps
    count; after a resume, only the steps run since.
    """
    first, last = records[0], records[-1]
    tokens_before = first["tokens"] - first["tokens"] / first["step"]
    tps = (last["tokens"] - tokens_before) / last["elapsed_s"]
    return {
        "steps": last["step"], "tokens": last["tokens"], "wall_time_s": last["elapsed_s"],
        "mean_tokens_per_s": tps, "mean_tokens_per_s_per_device": tps / world_size, "final_loss": last["loss"],
        "skipped_steps": last["skipped_steps"],
    }


class MetricsWriter:
    """Rank 0's logs: one JSON object per step in ``metrics.jsonl``, the same scalars in TensorBoard,
    and at the end ``summary.json`` plus a printed summary. Other ranks hold a disabled writer."""

    def __init__(self, out_dir: Path, enabled: bool, fresh: bool = True):
        self.out_dir = out_dir
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: rank 0 only

            self.path.parent.mkdir(parents=True, exist_ok=True)
            (out_dir / "summary.json").unlink(missing_ok=True)
            if fresh:  # a new run starts its curves anew; a resumed one continues them
                for old in (out_dir / "tb").glob("events.out.tfevents.*"):
                    old.unlink()
            self.tb = SummaryWriter(str(out_dir / "tb"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for key in TB_SCALARS:
            if record.get(key) is not None:
                self.tb.add_scalar(key, record[key], global_step=record["step"])

    def flush(self) -> None:
        """Write out TensorBoard's buffer (a run that stops early never reaches ``close``)."""
        if self.enabled:
            self.tb.flush()

    def close(self, records: list[dict], world_size: int) -> None:
        """Flush TensorBoard; write and print the run summary."""
        if not self.enabled:
            return
        self.tb.close()
        if not records:  # resumed at the last step: nothing ran
            return
        summary = run_summary(records, world_size)
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"done: {summary['steps']} steps, {summary['tokens']:,} tokens in {summary['wall_time_s']:.1f} s, "
              f"{summary['mean_tokens_per_s']:,.0f} tokens/s ({summary['mean_tokens_per_s_per_device']:,.0f} "
              f"per device), final loss {summary['final_loss']:.4f}"
              + (f", {summary['skipped_steps']} non-finite steps skipped" if summary["skipped_steps"] else ""), flush=True)


def drop_steps_after(path: Path, step: int) -> None:
    """Keep only records of steps <= ``step`` (none for 0), replacing the file atomically.

    A resumed run re-logs the steps after its checkpoint, which the interrupted run may have
    logged already, possibly ending in a line cut short by the crash; both go.
    """
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines(keepends=True) if _step_of(line) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def _step_of(line: str) -> float:
    """The record's step; infinity for a line that is not a complete record."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")
