"""TorchTitan's own trainer on the shapes, layout and settings of a shardwise bench row, scored like shardwise bench.

Writes a TorchTitan job into a work folder (TOML config, a local word-level tokenizer whose
vocabulary is the model's, a local JSONL corpus of random words), checks it with TorchTitan's
own config parser, tokenizer, dataloader and model class, launches ``torchtitan.train`` with
torchrun on every local GPU, reads TorchTitan's per-step TensorBoard scalars and writes one
JSON record with the keys of ``shardwise bench``'s (``shardwise.bench.summarize``).

What is compared (TorchTitan 0.2.2, model ``llama3``):

* shapes: ``--shapes PRESET`` registers a llama3 flavor with a shardwise preset's sizes
  (``benchmarks/torchtitan_plugin.py``; the FFN width is matched exactly); for ``llama3-8b``
  these are TorchTitan's own ``8B`` flavor. Other presets keep the llama3 architecture (no qkv
  bias, untied embeddings), which does not change N in the MFU formula. ``--flavor NAME`` takes a
  built-in flavor instead (e.g. ``debugmodel``).
* batch: ``--local-batch`` is the micro-batch per rank (TorchTitan's ``local_batch_size``),
  ``--global-batch`` the sequences per optimizer step; TorchTitan accumulates the rest.
* layout: ``--dp-shard`` (FSDP2; -1 = what TP leaves) and ``--tp`` (TorchTitan always pairs TP
  with sequence parallelism, and loss parallelism stays on).
* precision: with FSDP, bf16 parameters, fp32 gradient reduction and fp32 master weights, as in
  shardwise. TorchTitan applies no mixed precision to TP without FSDP (e.g. tp=2 on 2 GPUs):
  ``--dtype auto`` then trains in pure bf16 (``training.dtype=bfloat16``: bf16 weights, gradients
  and AdamW moments, no fp32 copy), fp32 otherwise; the record's ``mixed_precision`` says which.
* ``--ac full|selective|none``: selective is TorchTitan's per-op policy
  (``selective_ac_option="op"``: keeps attention and reduce-scatter outputs and every other
  matmul), the nearest to shardwise's selective, which keeps every matmul.
* ``--compile``: TorchTitan's per-block ``torch.compile`` (fullgraph) plus the compiled loss.
* ``--async-tp``: TorchTitan's async TP, with the plugin's symmetric-memory fix (see there).
* optimizer: fused AdamW, gradient clipping at 1.0 (TorchTitan's defaults, as shardwise's).

Timing: TorchTitan logs every step (``metrics.log_freq=1``); its ``end_to_end`` time is rank 0's
wall time between two step logs, each of which waits for the step's loss and gradient norm, so it
is the whole step (data, forward/backward, optimizer). The first ``--warmup`` steps are dropped;
``step_time_s_median`` is the median of the next ``--steps``, ``tokens_per_s_per_device`` =
global_batch x seq_len / median / world size, ``mfu`` uses ``shardwise.metrics`` (989e12 on H100),
``peak_mem_gib`` the highest per-step ``max_active`` over the timed steps (the caching allocator's
active bytes: what ``torch.cuda.max_memory_allocated`` reports, plus blocks awaiting a stream).
TorchTitan's own ``tps`` and ``mfu`` are kept beside them. Should TorchTitan exit non-zero after
logging every timed step (a crash at shutdown), the record is still written, with its exit code
in ``titan_exit_code``, and the script exits with that code.

Needs torchtitan 0.2.2 with torchdata, tyro, typeguard, docstring-parser, typing-extensions
(wheels in the git-ignored ``.whl-titan/``) and datasets (``.whl/``). On the GPU machine, from the
repository root::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl .whl-titan/*.whl
    export PYTHONPATH=$PWD/src:/tmp/site
    python3 benchmarks/torchtitan_baseline.py --shapes llama3-8b --seq-len 4096 --local-batch 1 \\
        --global-batch 8 --dp-shard 2 --ac full --compile --out runs/titan.json
    python3 benchmarks/torchtitan_baseline.py --shapes llama3-8b --seq-len 4096 --local-batch 1 \\
        --global-batch 8 --tp 2 --ac full --compile --async-tp --out runs/titan-tp.json
    TP=2 GB=8 bash benchmarks/gpu_sweep.sh llama3-8b 4096 sw-full-compile titan-full-compile

Not under torchrun: the script starts torchrun itself (``--nproc``, default every local GPU).
On CPU, TorchTitan runs only with ``benchmarks/torchtitan_cpu_shim/`` (its docstring has the
command); that smoke run checks the job, the launch and the log parsing, not the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from shardwise.model import PRESETS

HERE = Path(__file__).resolve().parent
FLAVOR_ENV = "SHARDWISE_TITAN_FLAVOR"  # read by torchtitan_plugin.py
PLUGIN = "torchtitan_plugin"
BOS, EOS, UNK = "<|begin_of_text|>", "<|end_of_text|>", "<unk>"
MAX_CORPUS_TOKENS = 1 << 23  # past this TorchTitan's infinite loader starts the corpus again
TB_TIME, TB_TPS, TB_MFU = "time_metrics/end_to_end(s)", "throughput(tps)", "mfu(%)"
TB_ACTIVE, TB_RESERVED, TB_DATA = "memory/max_active(GiB)", "memory/max_reserved(GiB)", "time_metrics/data_loading(s)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = p.add_mutually_exclusive_group()
    model.add_argument("--shapes", default="llama3-8b", choices=sorted(PRESETS), help="a shardwise preset's sizes")
    model.add_argument("--flavor", help="a TorchTitan llama3 flavor instead of --shapes (e.g. 8B, debugmodel)")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--local-batch", type=int, default=1, help="micro-batch: sequences per rank per forward")
    p.add_argument("--global-batch", type=int, default=0, help="sequences per optimizer step (0: local x dp)")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--dp-shard", type=int, default=-1, help="FSDP degree; -1: the ranks TP leaves")
    p.add_argument("--ac", choices=("none", "full", "selective"), default="none")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--async-tp", action="store_true", help="needs --compile and --tp > 1")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="TorchTitan's training.dtype; auto: bfloat16 for TP without FSDP, else float32")
    p.add_argument("--warmup", type=int, default=2, help="steps run but not timed")
    p.add_argument("--steps", type=int, default=6, help="timed steps")
    p.add_argument("--nproc", type=int, default=0, help="processes (default: every local GPU)")
    p.add_argument("--titan-arg", action="append", default=[], metavar="--SECTION.KEY=VALUE",
                   help="extra TorchTitan CLI override, repeatable (e.g. --titan-arg=--training.seed=1)")
    p.add_argument("--work-dir", default="", help="keep config, data and TorchTitan's output here (default: temp)")
    p.add_argument("--out", default="runs/torchtitan_baseline.json")
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a bad layout or batch with one line naming the fix, before anything is written."""
    args.nproc = args.nproc or torch.cuda.device_count()
    if args.nproc < 1:
        p.error("no GPU found: TorchTitan trains on GPUs (on CPU only with --nproc N and torchtitan_cpu_shim/)")
    if args.nproc % args.tp:
        p.error(f"--tp {args.tp} does not divide the {args.nproc} processes")
    if args.dp_shard == -1:
        args.dp_shard = args.nproc // args.tp
    if args.dp_shard * args.tp != args.nproc:
        p.error(f"--dp-shard {args.dp_shard} x --tp {args.tp} must equal the {args.nproc} processes")
    args.global_batch = args.global_batch or args.local_batch * args.dp_shard
    if args.global_batch % (args.local_batch * args.dp_shard):
        p.error(f"--global-batch {args.global_batch} must be a multiple of --local-batch x dp_shard "
                f"= {args.local_batch * args.dp_shard}")
    if args.seq_len % args.tp:
        p.error(f"--seq-len {args.seq_len} must be divisible by --tp {args.tp} (sequence parallelism)")
    if args.async_tp and not (args.compile and args.tp > 1):
        p.error("--async-tp needs --compile and --tp > 1")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.dtype == "auto":
        args.dtype = "bfloat16" if args.tp > 1 and args.dp_shard == 1 else "float32"


def flavor_args(preset: str) -> dict[str, Any]:
    """TorchTitan ``TransformerModelArgs`` for a shardwise preset's sizes.

    TorchTitan sizes the FFN as ``multiple_of * ceil(m * int(8 * dim / 3) / multiple_of)``;
    ``multiple_of`` = the preset's width makes that width exact whenever the base is not above it.
    """
    s = PRESETS[preset]
    dim, width, heads = s["hidden_size"], s["intermediate_size"], s["num_attention_heads"]
    if s.get("head_dim", dim // heads) * heads != dim:
        raise SystemExit(f"error: preset {preset} has head_dim * heads != hidden_size, which llama3 cannot express")
    base = int(2 * 4 * dim / 3)
    return {
        "dim": dim, "n_layers": s["num_hidden_layers"], "n_heads": heads, "n_kv_heads": s["num_key_value_heads"],
        "vocab_size": s["vocab_size"], "multiple_of": width,
        "ffn_dim_multiplier": None if base <= width else (width - 0.5) / base,
        "norm_eps": s.get("rms_norm_eps", 1e-6), "rope_theta": float(s.get("rope_theta", 10000.0)),
    }


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """A whitespace word-level tokenizer with exactly the model's vocabulary: ids 0..vocab_size-1.

    Words ``w3 .. w{V-1}`` map to their ids, so random words give tokens spread over the whole
    vocabulary, like shardwise bench's random tokens; BOS/EOS/UNK take ids 0-2.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {BOS: 0, EOS: 1, UNK: 2} | {f"w{i}": i for i in range(3, vocab_size)}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = WhitespaceSplit()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "add_bos_token": True, "add_eos_token": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def write_corpus(folder: Path, args: argparse.Namespace, vocab_size: int) -> None:
    """``train.jsonl`` of seeded random-word documents, one seq_len long each, enough for every step."""
    needed = (args.warmup + args.steps) * args.global_batch * (args.seq_len + 1)
    docs = max(2 * args.dp_shard, -(-min(needed, MAX_CORPUS_TOKENS) // args.seq_len) + args.dp_shard)
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train.jsonl").open("w") as f:
        for _ in range(docs):
            ids = rng.choices(range(3, vocab_size), k=args.seq_len)
            f.write(json.dumps({"text": " ".join(f"w{i}" for i in ids)}) + "\n")


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)  # strings and lists of strings: JSON's forms are valid TOML


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items()) + "\n"
                   for name, keys in sections.items())


def job_sections(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    """The TorchTitan job, section by section (TorchTitan's ``JobConfig`` field names)."""
    return {
        "job": {"dump_folder": str(work / "titan"), "description": "shardwise side-by-side baseline"},
        "metrics": {"log_freq": 1, "enable_tensorboard": True, "save_tb_folder": "tb", "disable_color_printing": True},
        "model": {"name": "llama3", "flavor": args.flavor or "shardwise", "hf_assets_path": str(work / "tokenizer")},
        "optimizer": {"name": "AdamW", "implementation": "fused"},
        "lr_scheduler": {"warmup_steps": 1},
        "training": {
            "dataset": "c4_test", "dataset_path": str(work / "corpus"), "seq_len": args.seq_len,
            "local_batch_size": args.local_batch, "global_batch_size": args.global_batch,
            "steps": args.warmup + args.steps, "max_norm": 1.0, "dtype": args.dtype,
            "mixed_precision_param": "bfloat16", "mixed_precision_reduce": "float32",
        },
        "parallelism": {
            "data_parallel_replicate_degree": 1, "data_parallel_shard_degree": args.dp_shard,
            "tensor_parallel_degree": args.tp, "enable_async_tensor_parallel": args.async_tp,
            "disable_loss_parallel": False,
        },
        "activation_checkpoint": {"mode": args.ac, "selective_ac_option": "op"},
        "compile": {"enable": args.compile, "components": ["model", "loss"]},
        "checkpoint": {"enable": False},
        "comm": {"init_timeout_seconds": 600, "train_timeout_seconds": 300},
        "experimental": {"custom_import": PLUGIN},
        "debug": {"seed": 0},
    }


def titan_env(args: argparse.Namespace) -> dict[str, str]:
    """Environment of this process and TorchTitan's: offline hub, the plugin importable, no NVLink multicast."""
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")])),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
    }
    if not args.flavor:
        env[FLAVOR_ENV] = json.dumps(flavor_args(args.shapes))
    return env


def preflight(args: argparse.Namespace, titan_argv: list[str]) -> dict[str, Any]:
    """Run the job's config, tokenizer, dataloader and model class through TorchTitan's own code.

    Catches a config TorchTitan refuses, a tokenizer or corpus it cannot read, a batch of the
    wrong shape or a token id past the vocabulary, here, in one process, before torchrun starts.
    Also builds the datasets cache that the ranks then read. Returns the model's sizes.
    """
    sys.path.insert(0, str(HERE))
    from torchtitan.config import ConfigManager
    from torchtitan.protocols.train_spec import get_train_spec

    job = ConfigManager().parse_args(titan_argv)
    __import__(job.experimental.custom_import)
    spec = get_train_spec(job.model.name)
    model_args = spec.model_args[job.model.flavor]
    model_args.update_from_config(job)
    tokenizer = spec.build_tokenizer_fn(job)
    loader = spec.build_dataloader_fn(dp_world_size=args.dp_shard, dp_rank=0, tokenizer=tokenizer, job_config=job)
    inputs, labels = next(iter(loader))
    shape = (args.local_batch, args.seq_len)
    if tuple(inputs["input"].shape) != shape or tuple(labels.shape) != shape:
        raise SystemExit(f"error: TorchTitan's loader gave batches of {tuple(inputs['input'].shape)}, not {shape}")
    if int(inputs["input"].max()) >= model_args.vocab_size:
        raise SystemExit(f"error: token id {int(inputs['input'].max())} >= vocab {model_args.vocab_size}")
    with torch.device("meta"):
        model = spec.model_cls(model_args)
    n_params = sum(p.numel() for p in model.parameters())
    ffn = model.layers["0"].feed_forward.w1.out_features
    want = None if args.flavor else PRESETS[args.shapes]["intermediate_size"]
    if want not in (None, ffn):
        raise SystemExit(f"error: TorchTitan built an FFN width of {ffn}, not preset {args.shapes}'s {want}")
    return {"flavor": job.model.flavor, "num_params": n_params,
            "flop_params": n_params - model.tok_embeddings.weight.numel(),  # untied: lm_head once, no lookup
            "layers": model_args.n_layers, "hidden": model_args.dim, "ffn": ffn, "vocab_size": model_args.vocab_size,
            "heads": model_args.n_heads, "kv_heads": model_args.n_kv_heads or model_args.n_heads}


def prepare(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, Any]]:
    """Write tokenizer, corpus and config into ``work``; return TorchTitan's argv and the model's sizes."""
    os.environ.update(titan_env(args))
    vocab = PRESETS[args.shapes]["vocab_size"] if not args.flavor else None
    if vocab is None:
        from torchtitan.models.llama3 import llama3_args

        if args.flavor not in llama3_args:
            raise SystemExit(f"error: --flavor {args.flavor} is not a llama3 flavor; choose one of "
                             f"{', '.join(llama3_args)}")
        vocab = llama3_args[args.flavor].vocab_size
    shutil.rmtree(work / "titan" / "tb", ignore_errors=True)  # a reused --work-dir: read this run's steps only
    write_tokenizer(work / "tokenizer", vocab)
    write_corpus(work / "corpus", args, vocab)
    config = work / "job.toml"
    config.write_text(toml_text(job_sections(args, work)))
    titan_argv = ["--job.config_file", str(config), *args.titan_arg]
    return titan_argv, preflight(args, titan_argv)


def launch(args: argparse.Namespace, titan_argv: list[str]) -> int:
    """torchrun TorchTitan's trainer on ``args.nproc`` processes; its output goes to ours."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "torchtitan.train", *titan_argv]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False, env=os.environ.copy()).returncode


def read_scalars(tb_root: Path) -> dict[str, dict[int, float]]:
    """Every scalar rank 0 logged to TensorBoard: tag -> {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, dict[int, float]] = {}
    for events in sorted(tb_root.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return scalars


def timed_steps(scalars: dict[str, dict[int, float]], args: argparse.Namespace) -> dict[str, list[float]] | None:
    """The per-step values of the steps after warm-up, in step order; None if any step is missing."""
    steps = range(args.warmup + 1, args.warmup + args.steps + 1)
    if any(s not in scalars.get(TB_TIME, {}) for s in steps):
        return None
    return {tag: [scalars[tag][s] for s in steps] for tag in (TB_TIME, TB_TPS, TB_MFU, TB_ACTIVE, TB_RESERVED, TB_DATA)}


def mixed_precision(args: argparse.Namespace) -> str:
    """What TorchTitan does with ``training.dtype`` in this layout (``maybe_enable_amp``, ``apply_fsdp``)."""
    if args.dtype == "bfloat16":
        return "pure bf16: bf16 weights, gradients and AdamW moments, no fp32 master copy"
    if args.dp_shard > 1:
        return "FSDP2: bf16 params, fp32 reduce, fp32 master weights"
    if args.tp == 1:
        return "autocast bf16, fp32 weights"
    return "fp32: TorchTitan applies no mixed precision to TP without FSDP"


def summarize(args: argparse.Namespace, sizes: dict[str, Any], per_step: dict[str, list[float]]) -> dict[str, Any]:
    """The record, with ``shardwise bench``'s keys and formulas, plus TorchTitan's own figures."""
    import torchtitan

    from shardwise.bench import device_name, versions
    from shardwise.metrics import device_peak_flops, flops_per_token, mfu

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    times = per_step[TB_TIME]
    median = statistics.median(times)
    tps = args.global_batch * args.seq_len / median
    per_device = tps / args.nproc
    flops_token = flops_per_token(sizes["flop_params"], sizes["layers"], sizes["hidden"], args.seq_len)
    return {
        "baseline": f"torchtitan {torchtitan.__version__}",
        "preset": None if args.flavor else args.shapes,
        "model_type": "torchtitan-llama3",
        "flavor": sizes["flavor"],
        "shapes": {k: sizes[k] for k in ("layers", "hidden", "ffn", "heads", "kv_heads", "vocab_size")},
        "num_params": sizes["num_params"],
        "flop_params": sizes["flop_params"],
        "layout": {"dp_replicate": 1, "dp_shard": args.dp_shard, "tp": args.tp, "world_size": args.nproc},
        "seq_len": args.seq_len,
        "global_batch_size": args.global_batch,
        "micro_batch_size": args.local_batch,
        "dtype": "float32" if mixed_precision(args).startswith("fp32") else "bfloat16",  # of the matmuls
        "training_dtype": args.dtype,
        "mixed_precision": mixed_precision(args),
        "activation_checkpointing": args.ac,
        "compile": args.compile,
        "async_tp": args.async_tp,
        "sequence_parallel": args.tp > 1,
        "loss_parallel": args.tp > 1,
        "step_time_s_median": median,
        "step_times_s": times,
        "tokens_per_s": tps,
        "tokens_per_s_per_device": per_device,
        "mfu": mfu(per_device, flops_token, device_peak_flops(device)),
        "peak_mem_gib": max(per_step[TB_ACTIVE]) if device.type == "cuda" else None,
        "peak_reserved_gib": max(per_step[TB_RESERVED]) if device.type == "cuda" else None,
        "data_loading_s_median": statistics.median(per_step[TB_DATA]),
        "titan_tps_median": statistics.median(per_step[TB_TPS]),
        "titan_mfu_median": statistics.median(per_step[TB_MFU]) / 100,
        "titan_args": args.titan_arg,
        "device": device_name(device),
        "versions": versions() | {"torchtitan": torchtitan.__version__},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="titan-") as tmp:
        work = Path(args.work_dir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        titan_argv, sizes = prepare(args, work)
        rc = launch(args, titan_argv)
        per_step = timed_steps(read_scalars(work / "titan" / "tb"), args)
        if per_step is None:
            last = args.warmup + args.steps
            print(f"error: TorchTitan exited with {rc} before logging steps {args.warmup + 1}..{last}", file=sys.stderr)
            return rc or 1
        if rc:  # e.g. a crash at shutdown: every timed step was logged, so the record stands, marked
            print(f"warning: TorchTitan exited with {rc} after logging every timed step", file=sys.stderr)
        result = summarize(args, sizes, per_step) | {"titan_exit_code": rc}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    from shardwise.bench import print_table

    print_table(result, out)
    print(f"TorchTitan's own: {result['titan_tps_median']:,.0f} tokens/s/device, MFU {result['titan_mfu_median']:.1%}; "
          f"{result['mixed_precision']}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
