"""Throughput, MFU and the per-step metrics file.

MFU (one formula everywhere, also in ``shardwise bench``)::

    flops_per_token = 6 * N + 12 * L * H * S
    MFU = tokens_per_s_per_device * flops_per_token / peak_flops_per_device

N counts every matmul weight with lm_head once and not the embedding lookup (``flop_params``),
L = layers, H = hidden size, S = sequence length (the attention score and value matmuls,
forward and backward, without causal halving). Peak is the dense bf16 rate of the device:
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


class MetricsWriter:
    """Appends one JSON object per step to ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


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
