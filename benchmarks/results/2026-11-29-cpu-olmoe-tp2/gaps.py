import json, sys
w = "/tmp/s40/ga/runs"
def c(n, k): return [json.loads(l).get(k) for l in open(f"{w}/{n}/metrics.jsonl")]
for a, b in [("tp2-0.1", "ref-0.1"), ("tp2-0", "ref-0")]:
    for k in ("loss", "router_loss"):
        try:
            x, y = c(a, k), c(b, k)
        except FileNotFoundError:
            continue
        if x[0] is None: continue
        print(a, k, " ".join(f"{abs(p - q) / abs(q):.0e}" for p, q in zip(x, y)))
