"""Where a profiled step's GPU waits: the idle gaps between device kernels in a `--bench.profile=true` trace.

Usage: python benchmarks/trace_gaps.py [--largest N] TRACE.json[.gz] ...

For each trace: the device span and the idle time in it, by gap size; how much of the idle time ends with a
kernel the host launched less than 15 us before it started (the host set the pace there) against one that
waited in the queue (a dependency: another stream, a collective); and the host time of the compiled regions
(`Torch-Compiled Region`) and between them, per call, on the thread that ran them. With ``--largest N``, the N
longest gaps in step order: where in the step, the kernel that ended each, and the host ops running at its middle
(innermost first) — host reads of device values show there as the step's optimizer issued on an idle GPU.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from collections import Counter
from itertools import pairwise
from pathlib import Path

from shardwise.profile import HOST_PACED_US, host_paced, idle_gaps

BINS = (10, 50, 200, 1000, float("inf"))  # upper bounds of the gap sizes, us


def load(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


def gaps(events: list[dict]) -> list[str]:
    first, last, found = idle_gaps(events)
    paced = host_paced(events)
    by_size, by_cause = Counter(), Counter()
    for gap, _, e in found:
        by_size[next(b for b in BINS if gap < b)] += gap
        by_cause["host" if paced(e) else "queued"] += gap
    span = last - first
    sizes = ", ".join(f"<{b}: {v / 1e3:.1f} ms" for b, v in sorted(by_size.items()))
    causes = (f"idle ended by a kernel launched <{HOST_PACED_US} us before it: {by_cause['host'] / 1e3:.1f} ms; "
              f"by a queued one: {by_cause['queued'] / 1e3:.1f} ms")
    return [f"device span {span / 1e3:.1f} ms, idle {sum(by_size.values()) / 1e3:.1f} ms",
            f"idle by gap size (us, upper bound): {sizes}", causes]


def largest(events: list[dict], n: int) -> list[str]:
    host = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation")]
    first, _, found = idle_gaps(events)
    lines = []
    for gap, start, e in sorted(sorted(found, key=lambda g: -g[0])[:n], key=lambda g: g[1]):
        middle = start + gap / 2
        ops = sorted((h for h in host if h["ts"] <= middle <= h["ts"] + h["dur"]), key=lambda h: h["dur"])
        lines.append(f"at {(start - first) / 1e3:7.2f} ms: {gap / 1e3:5.2f} ms idle, then {e['name'][:40]}; host: "
                     + (" < ".join(h["name"][:40] for h in ops[:3]) or "-"))
    return lines


def regions(events: list[dict]) -> list[str]:
    region = [e for e in events if e.get("ph") == "X" and e["name"].startswith("Torch-Compiled Region")]
    if not region:
        return []
    tid = Counter(e["tid"] for e in region).most_common(1)[0][0]
    region = sorted((e for e in region if e["tid"] == tid), key=lambda e: e["ts"])
    between = [b["ts"] - (a["ts"] + a["dur"]) for a, b in pairwise(region)]
    inside = statistics.median(e["dur"] for e in region)
    return [(f"compiled regions: {len(region)}, host time per call median {inside:.0f} us, "
             f"between calls median {statistics.median(between):.0f} us")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Idle gaps between device kernels in profiled steps' traces.")
    parser.add_argument("--largest", type=int, default=0, help="also list the N longest gaps")
    parser.add_argument("traces", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.traces:
        events = load(path)
        print(f"== {path}", *gaps(events), *regions(events), *largest(events, args.largest), sep="\n")
