"""Per-stream view of profiled steps (bench.profile traces): where a TP step's time goes beyond its compute.

Usage: python benchmarks/trace_streams.py NAME=TRACE.json ...   (e.g. plain=…/trace-rank0.json async=…/trace-rank0.json)

For each trace: the device span; per stream, busy ms (union) and the top kernels; kernel time by kind summed over
every stream; the main stream (the one with most matmul time): its idle ms inside the span, matmul ms and the
count/mean of its matmuls; then, across traces, the matmul kernels by name with their total ms side by side.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from trace_gaps import load  # this folder's script: the same trace reader, .gz included

from shardwise.profile import device_events, kernel_kind, kernel_kinds, length, union


def busy_ms(events: list[dict]) -> float:
    return length(union((e["ts"], e["ts"] + e["dur"]) for e in events)) / 1e3


def by_kind(events: list[dict]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in kernel_kinds(events).items())


def summarize(name: str, events: list[dict]) -> dict[str, list]:
    """Print one trace's per-stream view; return its matmul kernels: name -> [total ms, calls]."""
    dev = device_events(events)
    t0 = min(e["ts"] for e in dev)
    span = (max(e["ts"] + e["dur"] for e in dev) - t0) / 1e3
    by_stream = defaultdict(list)
    for e in dev:
        by_stream[e.get("args", {}).get("stream", -1)].append(e)
    print(f"== {name}: device span {span:.1f} ms, {len(dev)} device events")
    matmul_by_stream = {s: sum(e["dur"] for e in es if kernel_kind(e) == "matmul") for s, es in by_stream.items()}
    main = max(matmul_by_stream, key=matmul_by_stream.get)
    busy = {s: busy_ms(es) for s, es in by_stream.items()}
    for s, es in sorted(by_stream.items(), key=lambda kv: -len(kv[1])):
        names = defaultdict(float)
        for e in es:
            names[e["name"][:90]] += e["dur"] / 1e3
        top = sorted(names.items(), key=lambda kv: -kv[1])[:4]
        print(f"  stream {s}{' (main)' if s == main else ''}: {len(es)} events, busy {busy[s]:.1f} ms")
        for n, ms in top:
            print(f"      {ms:8.2f} ms  {n}")
    print(f"  by kind (all streams): {by_kind(dev)}")
    mm = [e["dur"] / 1e3 for e in by_stream[main] if kernel_kind(e) == "matmul"]
    print(f"  main stream: busy {busy[main]:.1f} of {span:.1f} ms (idle {span - busy[main]:.1f}); "
          f"matmuls {sum(mm):.1f} ms in {len(mm)}; by kind {by_kind(by_stream[main])}")
    mms = defaultdict(lambda: [0.0, 0])
    for e in dev:
        if kernel_kind(e) == "matmul":
            mms[e["name"][:100]][0] += e["dur"] / 1e3
            mms[e["name"][:100]][1] += 1
    return mms


def main() -> None:
    tables = {}
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        tables[name] = summarize(name, load(Path(path)))
    names = sorted({n for t in tables.values() for n in t}, key=lambda n: -max(t.get(n, [0])[0] for t in tables.values()))
    print("== matmul kernels, ms (calls) per trace: " + " | ".join(tables))
    for n in names[:20]:
        print("  " + " | ".join(f"{t.get(n, [0, 0])[0]:8.2f} ({t.get(n, [0, 0])[1]:4d})" for t in tables.values()) + f"  {n}")


if __name__ == "__main__":
    main()
