"""One profiled training step: a trace to open, and where the step's time went.

``shardwise bench --bench.profile=true`` runs one more step after the timed ones under
``torch.profiler`` and writes rank 0's trace to ``output.dir/trace-rank0.json`` (Chrome format:
Perfetto or chrome://tracing), its ops by CPU time to ``output.dir/profile-ops.txt`` and its device
work by GPU time to ``output.dir/profile-kernels.txt`` (per kind: matmul, attention, communication,
generated, foreach (optimizer and norms), memory, other; then the costliest kernels, which say what a
step spends its GPU time on where the op table says what its host does). From the trace's device
kernels it reports:

- **GPU busy**: the union of all kernel intervals, against the step's wall time; what is left is
  time the GPU waited, on the CPU launching work or on a host synchronization;
- **communication**: the union of NCCL kernels, and the part of it no compute kernel overlaps
  (**exposed**), which is what overlapping communication with compute could still save;
- **waiting for the host**: the GPU's idle gaps that end with a kernel (or copy) starting within
  ``HOST_PACED_US`` of the host's launch call returning: there the GPU had nothing queued and the host
  set the pace (a synchronization shows the same way: the queue drains, then the host launches);
- **CPU in ops**: the host's self time in every profiled op, summed over its threads (forward's and
  autograd's), blocking inside an op included: what the host did, not whether the GPU waited for it.

A step that waits for the host for a tenth of its time or more is CPU-bound: compiling (``train.compile``),
replaying eager blocks as CUDA graphs (``train.cudagraphs``, one data-parallel rank) or a larger
micro-batch are the usual remedies. (CPU time alone cannot say so: Llama-3-8B's tp=2 step at micro-batch 8
showed 3.1 s of CPU in ops against 2.0 s of a 99%-busy GPU; BENCHMARKS.md, session 23.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

Interval = tuple[float, float]
COMM_MARKERS = ("nccl", "allgather", "reducescatter", "allreduce")
LAUNCH_CATEGORIES = ("cuda_runtime", "cuda_driver")  # the host's launch calls, linked to device work by correlation
HOST_PACED_US = 15  # device work starting this soon after its launch returned found nothing queued before it
CPU_BOUND_SHARE = 0.1  # of the step's wall time spent waiting for the host


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same time."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def length(intervals: Iterable[Interval]) -> float:
    return sum(b - a for a, b in intervals)


def subtract(keep: list[Interval], remove: list[Interval]) -> list[Interval]:
    """Parts of ``keep`` (a union) not covered by ``remove`` (a union)."""
    out, j = [], 0
    for start, end in keep:
        while j < len(remove) and remove[j][1] <= start:
            j += 1
        k, cursor = j, start
        while k < len(remove) and remove[k][0] < end:
            if remove[k][0] > cursor:
                out.append((cursor, remove[k][0]))
            cursor = max(cursor, remove[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def device_events(trace_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Chrome trace's device work: kernels, copies and memsets."""
    return [e for e in trace_events if e.get("cat") in DEVICE_CATEGORIES and "dur" in e]


def idle_gaps(trace_events: list[dict[str, Any]]) -> tuple[float, float, list[tuple[float, float, dict[str, Any]]]]:
    """The device span's start and end, and its idle gaps in order: (length, start, the device event ending it), us."""
    device = sorted(device_events(trace_events), key=lambda e: e["ts"])
    if not device:
        return 0.0, 0.0, []
    found, end = [], float(device[0]["ts"])
    for e in device:
        if e["ts"] > end:
            found.append((e["ts"] - end, end, e))
        end = max(end, float(e["ts"]) + float(e["dur"]))
    return float(device[0]["ts"]), end, found


def host_paced(trace_events: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    """Whether a device event started within ``HOST_PACED_US`` of its launch call returning."""
    launches = {e["args"]["correlation"]: e for e in trace_events
                if e.get("cat") in LAUNCH_CATEGORIES and "correlation" in e.get("args", {})}

    def paced(event: dict[str, Any]) -> bool:
        launch = launches.get(event.get("args", {}).get("correlation"))
        return launch is not None and event["ts"] - (launch["ts"] + launch["dur"]) < HOST_PACED_US
    return paced


def kernel_breakdown(trace_events: list[dict[str, Any]]) -> dict[str, float]:
    """Busy, communication, exposed-communication and waiting-for-the-host milliseconds from a Chrome trace."""
    kernels = device_events(trace_events)
    is_comm = [any(m in e["name"].lower() for m in COMM_MARKERS) for e in kernels]
    spans = [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in kernels]
    comm = union(s for s, c in zip(spans, is_comm) if c)
    compute = union(s for s, c in zip(spans, is_comm) if not c)
    paced = host_paced(trace_events)
    host_wait = sum(gap for gap, _, e in idle_gaps(trace_events)[2] if paced(e))
    us = 1e-3  # trace times are microseconds
    return {"gpu_busy_ms": length(union(spans)) * us, "comm_ms": length(comm) * us,
            "exposed_comm_ms": length(subtract(comm, compute)) * us, "host_wait_ms": host_wait * us}


KINDS = (("communication", COMM_MARKERS), ("attention", ("flash", "fmha", "attention", "cudnn")),
         ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "cublas", "sm90_", "sm80_")),
         ("generated", ("triton",)), ("foreach", ("adam", "multi_tensor_apply")))


def kernel_kind(event: dict[str, Any]) -> str:
    """The kind of one device event, by its name: the first of ``KINDS`` that matches, else memory or other."""
    name = event["name"].lower()
    kind = next((k for k, markers in KINDS if any(m in name for m in markers)), None)
    return kind or ("memory" if event.get("cat") != "kernel" else "other")


def kernel_kinds(trace_events: list[dict[str, Any]]) -> dict[str, float]:
    """Device milliseconds per kind (``kernel_kind``), largest first, summed over streams (overlapped work
    counts twice)."""
    kinds: dict[str, float] = {}
    for e in device_events(trace_events):
        kind = kernel_kind(e)
        kinds[kind] = kinds.get(kind, 0.0) + float(e["dur"]) * 1e-3
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def kernel_table(trace_events: list[dict[str, Any]], kinds: dict[str, float], top: int = 30) -> str:
    """The trace's ``kinds`` (``kernel_kinds``), then the ``top`` kernel names by device time."""
    names: dict[str, list[float]] = {}
    for e in device_events(trace_events):
        names.setdefault(e["name"], []).append(float(e["dur"]) * 1e-3)
    total = sum(kinds.values()) or 1.0
    lines = [f"{'kind':16} {'GPU ms':>9} {'share':>6}"]
    lines += [f"{k:16} {v:9.2f} {v / total:6.1%}" for k, v in kinds.items()]
    lines += ["", f"{'GPU ms':>9} {'share':>6} {'calls':>6} {'mean us':>8}  kernel"]
    for name, durs in sorted(names.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"{sum(durs):9.2f} {sum(durs) / total:6.1%} {len(durs):6d} {sum(durs) / len(durs) * 1e3:8.1f}  "
                     f"{name[:140]}")
    return "\n".join(lines) + "\n"


def profile_step(step: Callable[[], None], out_dir: Path, rank: int, cuda: bool) -> dict[str, Any] | None:
    """Run ``step`` once, under the profiler in rank 0, which writes the trace and returns the breakdown (ms)."""
    if rank != 0:
        step()
        return None
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as prof:
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    path = out_dir / "trace-rank0.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))
    ops = prof.key_averages()
    (out_dir / "profile-ops.txt").write_text(ops.table(sort_by="self_cpu_time_total", row_limit=40) + "\n")
    cpu_us = sum(e.self_cpu_time_total for e in ops)
    result = {"trace": str(path), "ops_table": str(out_dir / "profile-ops.txt"), "wall_ms": wall * 1e3,
              "cpu_ops_ms": cpu_us * 1e-3}
    if cuda:
        events = json.loads(path.read_text())["traceEvents"]
        kinds = kernel_kinds(events)
        (out_dir / "profile-kernels.txt").write_text(kernel_table(events, kinds))
        result |= kernel_breakdown(events) | {"kernel_kinds_ms": kinds, "kernels_table": str(out_dir / "profile-kernels.txt")}
    return result


def remedies(compiled: bool, graphs: bool) -> str:
    """What to try for a CPU-bound step, leaving out what the run already does."""
    if compiled or graphs:
        return "a larger train.micro_batch_size"
    return "train.compile=true, train.cudagraphs=true with one data-parallel rank or a larger train.micro_batch_size"


def describe(p: dict[str, Any], compiled: bool = False, graphs: bool = False) -> list[tuple[str, str]]:
    """Rows for the bench table; a verdict, with what the run (``compiled``, ``graphs``) has not tried yet, when the
    GPU waits on the host."""
    rows = [("profiled step", f"{p['wall_ms']:.1f} ms wall, {p['cpu_ops_ms']:.1f} ms of CPU in ops")]
    if "gpu_busy_ms" in p:
        busy, waits = p["gpu_busy_ms"] / p["wall_ms"], p["host_wait_ms"] / p["wall_ms"]
        idle = f"waiting for the host {p['host_wait_ms']:.1f} ms ({waits:.0%})"
        rows.append(("GPU busy", f"{p['gpu_busy_ms']:.1f} ms ({busy:.0%} of the step); {idle}"))
        exposed = f"{p['comm_ms']:.1f} ms, {p['exposed_comm_ms']:.1f} ms exposed (not overlapped with compute)"
        rows.append(("communication", exposed))
        if waits >= CPU_BOUND_SHARE:
            rows.append(("verdict", f"CPU-bound: the GPU waits on the host (try {remedies(compiled, graphs)})"))
    if "kernel_kinds_ms" in p:
        total = sum(p["kernel_kinds_ms"].values()) or 1.0
        kinds = ", ".join(f"{k} {v / total:.0%}" for k, v in p["kernel_kinds_ms"].items() if v >= 0.01 * total)
        rows.append(("GPU time by kind", f"{kinds} (by kernel: {p['kernels_table']})"))
    rows.append(("trace", str(p["trace"])))
    return rows
