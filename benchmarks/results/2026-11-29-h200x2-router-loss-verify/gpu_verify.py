"""Device call 177: shardwise.verify's parity check (the test suite's, tests/test_parallelize.py) run on this machine's
GPUs instead of CPU gloo: each case trains STEPS steps in fp32 eager on 2 GPUs (NCCL) and is compared with the plain
transformers model on CPU (the reference the suite uses), loss, logits, every first-step gradient, grad norms and
weights at verify.TOLERANCE. Cases: the mixtures of experts with the routers' load-balancing loss at coefficient 1.
usage: python .carry/gpu_verify.py OUT_JSON"""
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, "tests")
from _parity_cases import case_overrides, variant_presets  # noqa: E402

from shardwise.config import load_config  # noqa: E402
from shardwise.verify import compare, register_presets, run_reference  # noqa: E402

PRESETS = variant_presets()
register_presets(PRESETS)
STEPS = {"train.steps": 4}
LAYOUTS = {
    "tp2-sp": {"parallel.tp": 2, "parallel.tp_attention": "heads"},
    "tp2-seqattn": {"parallel.tp": 2, "parallel.tp_attention": "sequences"},
    "dp2": {"parallel.tp": 1, "parallel.dp_shard": 2},
}
VARIANTS = ["tiny-olmoe-2l", "tiny-mixtral-2l", "tiny-qwen2-moe-2l"]
out_json = sys.argv[1]
results = {}
for name, layout in LAYOUTS.items():
    cases = [case_overrides(v, {**layout, **STEPS}) for v in VARIANTS]
    out = f"/tmp/gv-{name}.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["tests", os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "shardwise.verify",
           "--presets", json.dumps(PRESETS), "--cases", json.dumps(cases), "--out", out]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        print(name, "failed:", proc.stderr[-3000:])
        continue
    for variant, got in zip(VARIANTS, torch.load(out)):
        case = case_overrides(variant, {**layout, **STEPS})
        ref = run_reference(load_config(None, case_overrides(variant, {
            "parallel.tp": 1, "train.seq_len": case["train.seq_len"], "data.packing": True,
            "train.micro_batch_size": case["train.micro_batch_size"], **STEPS})))
        checks = compare(got, ref)
        results[f"{name}/{variant}"] = [c.line() for c in checks]
        print(f"== {name} {variant} ({'cuda' if torch.cuda.is_available() else 'cpu'})")
        print("\n".join(c.line() for c in checks))
json.dump(results, open(out_json, "w"), indent=1)
