"""What checksumming costs a checkpoint save, and what verifying costs a resume, on CPU/gloo.

After one training step, each rank saves a ~170M-parameter Qwen2-shaped model (fp32 weights and
Adam moments: about 2 GiB per checkpoint) through the trainer's own ``checkpoint.save`` a few times, timing the whole save
and, inside it, the hashing of the rank's own files (``manifest.describe``); then the verification
``checkpoint.resume`` runs before loading; last, one core's speed reading a shard file plainly, through
xxh3-128 and through sha256. Run it under torchrun; rank 0 prints a Markdown table
and writes the raw numbers as JSON:

    PYTHONPATH=src torchrun --standalone --nproc-per-node=2 benchmarks/checkpoint_save.py [--dir /tmp/shardwise-ckpt]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import time
from pathlib import Path

import torch.distributed as dist

from shardwise import checkpoint, manifest
from shardwise.bench import synthetic_batches
from shardwise.config import load_config
from shardwise.data import byte_tokenizer
from shardwise.model import PRESETS, num_params
from shardwise.run import build_run
from shardwise.train import forward_backward, optimizer_step

PRESET = {"model_type": "qwen2", "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8,
          "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 32000, "tie_word_embeddings": False}
SAVES = 3


def timed(fn, totals: list[float]):
    """``fn`` that adds the seconds of each call to ``totals[-1]``."""
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[-1] += time.perf_counter() - t0
    return wrapper


def read_speeds(path: Path) -> dict[str, float]:
    """GB/s of reading ``path`` (in page cache) plainly, through xxh3-128 (the manifest's hash) and sha256."""
    def plain(p: Path) -> None:
        with p.open("rb") as f:
            while f.read(manifest.CHUNK):
                pass

    def sha256(p: Path) -> None:
        with p.open("rb") as f:
            hashlib.file_digest(f, "sha256")

    speeds = {}
    for name, fn in (("read", plain), ("xxh3_128", manifest.checksum), ("sha256", sha256)):
        t0 = time.perf_counter()
        fn(path)
        speeds[name] = path.stat().st_size / (time.perf_counter() - t0) / 1e9
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/shardwise-ckpt")
    args = parser.parse_args()
    PRESETS["bench-ckpt"] = PRESET
    run = build_run(load_config(None, {"model.preset": "bench-ckpt", "parallel.tp": 1, "parallel.dp_shard": -1,
                                       "output.dir": args.dir, "checkpoint.keep": 1, "checkpoint.resume": "auto",
                                       "train.seq_len": 32, "train.global_batch_size": 2,
                                       "train.micro_batch_size": 1}))
    forward_backward(run, synthetic_batches(run))
    optimizer_step(run)  # creates the Adam moments, which are most of a checkpoint
    if dist.get_rank() == 0:
        shutil.rmtree(args.dir, ignore_errors=True)
    dist.barrier()
    hashing: list[float] = []
    manifest.describe = timed(manifest.describe, hashing)
    saves = []
    for step in range(1, SAVES + 1):
        hashing.append(0.0)
        t0 = time.perf_counter()
        checkpoint.save(run, step, byte_tokenizer(), skipped=0)
        saves.append(time.perf_counter() - t0)
    checking = [0.0]
    manifest.checksum = timed(manifest.checksum, checking)
    t0 = time.perf_counter()
    checkpoint.resume(run)
    resume_s = time.perf_counter() - t0
    ckpt = checkpoint.checkpoints_root(run.cfg) / f"step-{SAVES}"
    row = {"save_s": statistics.median(saves), "hash_s": statistics.median(hashing[:SAVES]),
           "resume_s": resume_s, "verify_s": checking[0]}
    rows: list[dict] = [{}] * dist.get_world_size()
    dist.all_gather_object(rows, row)
    if dist.get_rank() == 0:
        size = sum(f.stat().st_size for f in ckpt.iterdir()) / 2**30
        shard = max(ckpt.glob("__0_*.distcp"), key=lambda f: f.stat().st_size)
        result = {"num_params": num_params(run.model), "checkpoint_gib": size, "ranks": rows,
                  "gb_per_s": read_speeds(shard)}
        (Path(args.dir) / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"{result['num_params'] / 1e6:.0f}M parameters, checkpoint {size:.2f} GiB, {len(rows)} ranks\n")
        print("| rank | save s (median of 3) | hashing its files s | share | resume s | verifying s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for rank, r in enumerate(rows):
            print(f"| {rank} | {r['save_s']:.2f} | {r['hash_s']:.2f} | {r['hash_s'] / r['save_s']:.0%} | "
                  f"{r['resume_s']:.2f} | {r['verify_s']:.2f} |")
        print("\none core, GB/s: " + ", ".join(f"{k} {v:.2f}" for k, v in result["gb_per_s"].items()))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
