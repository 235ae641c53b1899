"""Peak host memory per rank when shardwise loads a Hugging Face model folder, against model size.

Writes a random-weight checkpoint of a preset's shapes with ``save_pretrained`` (once), then loads
it through ``build_run`` on CPU/gloo at each layout in a fresh ``torchrun`` and reports every
rank's peak RSS (``VmHWM``, which includes the touched pages of memory-mapped files), next to
``from_pretrained`` on one process. Prints a Markdown table and writes the raw numbers as JSON.

    PYTHONPATH=src python benchmarks/load_memory.py [--preset qwen2-0.5b] [--dir /tmp/shardwise-load-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30
# (label, parallel overrides, processes)
LAYOUTS = [
    ("1 process", {"parallel.tp": 1, "parallel.dp_shard": 1}, 1),
    ("tp=2", {"parallel.tp": 2, "parallel.dp_shard": 1}, 2),
    ("dp_shard=2 x tp=2", {"parallel.tp": 2, "parallel.dp_shard": 2}, 4),
    ("dp_shard=4", {"parallel.tp": 1, "parallel.dp_shard": 4}, 4),
]


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux ``VmHWM``).

    Not ``ru_maxrss``: Linux carries that over ``exec`` from the forked parent, so each worker
    would report at least its launcher's peak (here, the process that wrote the checkpoint).
    """
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024 / GIB


def write_checkpoint(preset: str, folder: Path) -> None:
    """Random init of the preset's shapes, saved in fp32 as ``save_pretrained`` does by default."""
    import torch
    from transformers import AutoModelForCausalLM

    from shardwise.config import ModelConfig
    from shardwise.model import hf_config

    AutoModelForCausalLM.from_config(hf_config(ModelConfig(preset=preset)), dtype=torch.float32).save_pretrained(folder)


def shardwise_worker(folder: str, layout: dict[str, int], out: str) -> None:
    """One rank: baseline RSS after imports, then ``build_run`` (which loads), then the peak."""
    import torch.distributed as dist

    from shardwise.config import load_config
    from shardwise.run import build_run

    baseline = peak_rss_gib()
    t0 = time.perf_counter()
    run = build_run(load_config(None, {"model.path": folder, "train.dtype": "float32",
                                       **{k: str(v) for k, v in layout.items()}}))
    seconds = time.perf_counter() - t0
    local = sum(p.to_local().numel() * p.element_size() for p in run.model.parameters()) / GIB
    rows = [None] * dist.get_world_size()
    dist.all_gather_object(rows, {"baseline_gib": baseline, "peak_gib": peak_rss_gib(), "seconds": seconds,
                                  "local_weights_gib": local})
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def hf_worker(folder: str, out: str) -> None:
    """The single-process reference: plain ``from_pretrained`` in fp32, then one read of every weight.

    ``from_pretrained`` may leave the weights as views of the memory-mapped file, which occupy no
    memory until first touched; the read counts them as any forward pass would.
    """
    import torch
    from transformers import AutoModelForCausalLM

    baseline = peak_rss_gib()
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        sum(p.sum() for p in model.parameters())
    Path(out).write_text(json.dumps([{"baseline_gib": baseline, "peak_gib": peak_rss_gib(),
                                      "seconds": time.perf_counter() - t0}]))


def measure(cmd: list[str], out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="qwen2-0.5b")
    parser.add_argument("--dir", default="/tmp/shardwise-load-memory")
    parser.add_argument("--json", default="", help="where to write the raw numbers (default: DIR/results.json)")
    parser.add_argument("--worker", choices=["shardwise", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--layout", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.dir) / args.preset
    if args.worker == "shardwise":
        return shardwise_worker(str(folder), json.loads(args.layout), args.out)
    if args.worker == "hf":
        return hf_worker(str(folder), args.out)
    if not (folder / "config.json").is_file():
        write_checkpoint(args.preset, folder)
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / GIB
    out = Path(args.dir) / "worker.json"
    me = [sys.executable, __file__, "--preset", args.preset, "--dir", args.dir, "--out", str(out)]
    results = {"preset": args.preset, "checkpoint_gib": size,
               "from_pretrained": measure([*me, "--worker", "hf"], out)}
    print(f"{args.preset}: checkpoint {size:.2f} GiB (fp32)\n")
    print("| loader | processes | master weights per rank GiB | peak RSS per rank GiB (max) | above imports GiB | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    ref = results["from_pretrained"][0]
    print(f"| `from_pretrained` + read | 1 | {size:.2f} | {ref['peak_gib']:.2f} | {ref['peak_gib'] - ref['baseline_gib']:.2f} "
          f"| {ref['seconds']:.1f} |")
    for label, layout, nproc in LAYOUTS:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               *me[1:], "--worker", "shardwise", "--layout", json.dumps(layout)]
        ranks = results[label] = measure(cmd, out)
        worst = max(ranks, key=lambda r: r["peak_gib"])
        print(f"| shardwise, {label} | {nproc} | {max(r['local_weights_gib'] for r in ranks):.2f} | "
              f"{worst['peak_gib']:.2f} | {worst['peak_gib'] - worst['baseline_gib']:.2f} | "
              f"{max(r['seconds'] for r in ranks):.1f} |", flush=True)
    Path(args.json or Path(args.dir) / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
