"""Host time of a profiled step's forward, per decoder block: what the main thread does inside each compiled region
and between consecutive ones (top-level host events there, summed by name; 'python' = time in no op)."""
import gzip
import json
import sys
from collections import Counter, defaultdict


def load(p):
    with (gzip.open if p.endswith(".gz") else open)(p, "rt") as f:
        return json.load(f)["traceEvents"]

def top_level(evs, lo, hi):
    inside = sorted((e for e in evs if e["ts"] >= lo and e["ts"] + e["dur"] <= hi), key=lambda e: (e["ts"], -e["dur"]))
    out, end = [], lo
    for e in inside:
        if e["ts"] >= end:
            out.append(e); end = e["ts"] + e["dur"]
    return out

for path in sys.argv[1:]:
    ev = [e for e in load(path) if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation", "python_function")]
    reg = [e for e in ev if e["name"].startswith("Torch-Compiled Region")]
    tid = Counter(e["tid"] for e in reg).most_common(1)[0][0]
    reg = sorted((e for e in reg if e["tid"] == tid), key=lambda e: e["ts"])
    main = [e for e in ev if e["tid"] == tid and not e["name"].startswith("Torch-Compiled Region")]
    between, inside = defaultdict(float), defaultdict(float)
    n = len(reg) - 1
    for a, b in zip(reg, reg[1:]):
        lo, hi = a["ts"] + a["dur"], b["ts"]
        tops = top_level(main, lo, hi)
        for e in tops:
            between[e["name"][:60]] += e["dur"]
        between["python (no op)"] += (hi - lo) - sum(e["dur"] for e in tops)
    for a in reg:
        tops = top_level(main, a["ts"], a["ts"] + a["dur"])
        for e in tops:
            inside[e["name"][:60]] += e["dur"]
        inside["python (no op)"] += a["dur"] - sum(e["dur"] for e in tops)
    print(f"== {path}: {len(reg)} compiled regions on the main thread")
    for title, d, k in (("between consecutive regions, us per gap", between, n), ("inside a region, us per call", inside, len(reg))):
        print(f"-- {title} (total {sum(d.values()) / k:.0f})")
        for name, t in sorted(d.items(), key=lambda x: -x[1])[:14]:
            print(f"   {t / k:8.1f}  {name}")
