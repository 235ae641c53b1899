"""Typed run configuration: TOML file + ``--section.key=value`` overrides.

Every key has one typed default here, so an unknown or mistyped key is caught before any
process is started, with the nearest valid key suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib


class ConfigError(ValueError):
    """A user-facing configuration mistake; the CLI prints it as one line."""


@dataclass
class ModelConfig:
    preset: str = "tiny-qwen2"
    path: str = ""
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    packed_attention: str = "auto"  # rows with a document boundary: flex block masks (compiled GPU runs), or a mask
    trust_remote_code: bool = False  # run Python code shipped in model.path / data.tokenizer folders


@dataclass
class ParallelConfig:
    dp_replicate: int = 1
    dp_shard: int = -1
    cp: int = 1  # context parallelism: each sequence split over cp ranks
    cp_exchange: str = "allgather"  # how CP ranks get each other's K/V for rows without a mask: allgather or ring
    tp: int = 1
    sequence_parallel: bool = True
    loss_parallel: bool = True
    async_tp: bool = False
    # attention under TP: "heads" split over the TP ranks (Megatron), or "sequences": each TP rank attends over the
    # whole sequences it holds with every head (attention weights replicated over TP ranks; no TP collectives);
    # auto = sequences where the micro-batches allow it and shardwise plan says it fits the GPU, else heads
    tp_attention: str = "auto"
    # FSDP: free a block's gathered weights after its forward (true) or keep them for its backward and the step's
    # next micro-batches (false: one all-gather per block per step instead of two per micro-batch); auto = false
    # where shardwise plan says that fits the GPU
    reshard_after_forward: str = "auto"
    defer_grad_reduce: bool = False  # true: keep unsharded gradients until the last micro-batch (less traffic, more memory)
    timeout_s: int = 600  # a step, save or evaluation longer than this ends the job (a rank hung)

    def reshards(self) -> bool:
        """Whether FSDP frees gathered blocks after forward: ``true``, or ``auto`` where nothing resolved it
        (``launch.resolve_auto`` does on GPUs), as that needs no memory estimate to be safe."""
        return self.reshard_after_forward != "false"

    def shards_tokens(self) -> bool:
        """Whether sequence parallelism is in effect: on, and more than one TP rank to cut each micro-batch's tokens
        over (one TP rank holds them all)."""
        return self.sequence_parallel and self.tp > 1

    def holds_whole_rows(self) -> bool:
        """Whether sequence parallelism's cut can give each TP rank whole rows (micro-batches of a multiple of
        ``tp`` sequences permitting), as attention per sequence needs: SP on, and no CP cutting the rows."""
        return self.sequence_parallel and self.cp == 1

    def attention(self) -> str:
        """How TP splits attention: ``sequences``, or ``heads`` for ``heads`` and for ``auto`` where nothing resolved
        it (``launch.resolve_auto`` does on GPUs), as every layout that TP can split runs that way."""
        return "sequences" if self.tp_attention == "sequences" else "heads"


@dataclass
class TrainConfig:
    steps: int = 250
    global_batch_size: int = 16
    micro_batch_size: int = 8
    seq_len: int = 256
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    dtype: str = "auto"
    activation_checkpointing: str = "none"
    compile: str = "auto"  # auto = on where CUDA is present (see ``compiles``)
    cudagraphs: bool = False  # replay eager blocks as CUDA graphs (one data-parallel rank; ``shardwise.graphs``)
    fused_optimizer: bool = True
    eval_every: int = 50  # steps between held-out losses; 0 = never
    gc_every: int = 50  # steps between cycle collections, all ranks at once (``shardwise.collect``); 0 = Python's own
    on_nonfinite: str = "stop"  # a non-finite loss or gradient norm: stop the job, or skip the step
    # mixtures of experts: the routers' load-balancing loss coefficient (0: none); auto = transformers' choice, the
    # model config's router_aux_loss_coef where it sets output_router_logits (``shardwise.router``)
    router_aux_loss: str = "auto"

    def compiles(self, device_type: str) -> bool:
        """Whether blocks and loss are compiled: ``true``, or ``auto`` on GPUs (the fast default there;
        on CPU compilation costs more time than a smoke run saves) unless ``cudagraphs`` replays eager blocks."""
        return self.compile == "true" or (self.compile == "auto" and device_type == "cuda" and not self.cudagraphs)

    def router_coefficient(self) -> float | None:
        """``router_aux_loss`` as a number; None for ``auto`` (the model config decides, ``router.coefficient``)."""
        if self.router_aux_loss == "auto":
            return None
        try:
            coef = float(self.router_aux_loss)
        except ValueError:
            coef = math.nan
        if not 0 <= coef < math.inf:
            raise ConfigError(f"train.router_aux_loss={self.router_aux_loss} must be auto or a coefficient >= 0 "
                              "(e.g. 0.01; 0: no load-balancing loss)")
        return coef


@dataclass
class DataConfig:
    path: str = ""  # a .txt/.jsonl/.json/.parquet file, a folder or a glob; empty = the stdlib corpus
    tokenizer: str = ""
    max_bytes: int = 4_000_000  # size of the stdlib corpus
    packing: bool = True
    cache_dir: str = ""  # empty = the Hugging Face datasets cache
    num_proc: int = 0  # tokenizing processes; 0 = one per 1000 documents, at most one per CPU
    val_fraction: float = 0.01
    val_batches: int = 4


@dataclass
class OutputConfig:
    dir: str = "runs/default"
    progress: bool = True


@dataclass
class CheckpointConfig:
    every: int = 0  # save every N steps; 0 = only at the end
    keep: int = 2  # complete checkpoints kept in output.dir/checkpoints
    resume: str = ""  # "" = start fresh, "auto" = newest complete checkpoint, or a step-N directory
    on_signal: str = "SIGTERM,SIGUSR1"  # finish the step, save and exit on these (SLURM's warnings); "" = off
    shutdown_timeout_s: int = 300  # shardwise's own launcher: wait this long for workers to save, then SIGKILL


@dataclass
class BenchConfig:
    warmup: int = 3
    steps: int = 10
    out: str = ""  # JSON path; empty means output.dir/bench.json
    profile: bool = False  # one more step under torch.profiler: trace in output.dir, CPU/GPU/communication times
    document_len: int = 0  # 0: one document a row; N: packed documents of 1..2N-1 tokens (N on average)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


# The job `shardwise train` runs with no config file: tiny Qwen2 on 2 (DP) x 2 (TP) CPU processes.
DEFAULT_JOB: dict[str, Any] = {"parallel.tp": 2, "parallel.dp_shard": -1}

CHOICES = {
    "train.dtype": ("auto", "float32", "bfloat16"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "train.activation_checkpointing": ("none", "full", "selective"),
    "train.compile": ("auto", "true", "false"),
    "model.packed_attention": ("auto", "flex", "mask"),
    "train.on_nonfinite": ("stop", "skip"),
    "parallel.cp_exchange": ("allgather", "ring"),
    "parallel.tp_attention": ("auto", "heads", "sequences"),
    "parallel.reshard_after_forward": ("auto", "true", "false"),
}


# Keys that take ``auto`` or a number, so are strings that a TOML number may set.
AUTO_OR_NUMBER = ("train.router_aux_loss",)


def parse_signals(text: str) -> list[signal.Signals]:
    """``checkpoint.on_signal``: comma-separated names of catchable signals, e.g. ``SIGTERM,SIGUSR1``."""
    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    found = [getattr(signal, n, None) for n in names]
    for name, sig in zip(names, found):
        if not isinstance(sig, signal.Signals) or sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ConfigError(f"checkpoint.on_signal={text!r}: {name} is not a signal that can be caught; "
                              "use names such as SIGTERM,SIGUSR1, or '' for none")
    return found


def _all_keys() -> list[str]:
    cfg = Config()
    return [f"{s.name}.{k.name}" for s in dataclasses.fields(cfg) for k in dataclasses.fields(getattr(cfg, s.name))]


def _coerce(key: str, value: Any, current: Any) -> Any:
    """Convert a CLI string or TOML value to the type of the key's default."""
    kind = type(current)
    if isinstance(value, bool) and kind is str:  # `compile = true` in TOML for a true/false/auto key
        return str(value).lower()
    if isinstance(value, int | float) and key in AUTO_OR_NUMBER:  # `router_aux_loss = 0.01` in TOML
        return str(value)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return text.lower() in ("true", "1", "yes")
            return kind(float(text)) if kind is int and "e" in text.lower() else kind(text)
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a valid {kind.__name__}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is not type(value):
        raise ConfigError(f"{key}={value!r} must be a {kind.__name__}")
    return value


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Set ``section.key`` on ``cfg``; unknown keys fail with the closest valid suggestion."""
    keys = _all_keys()
    if key not in keys:
        near = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]}?" if near else f"; valid keys: {', '.join(keys)}"
        raise ConfigError(f"unknown config key {key!r}{hint}")
    section, name = key.split(".")
    obj = getattr(cfg, section)
    value = _coerce(key, value, getattr(obj, name))
    if key in CHOICES and isinstance(value, str) and value.lower() in CHOICES[key]:  # True, as Python writes it
        value = value.lower()
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(CHOICES[key])}")
    setattr(obj, name, value)


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``['--train.lr=1e-3', '--train.steps', '5']`` -> ``{'train.lr': '1e-3', 'train.steps': '5'}``."""
    out: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --train.steps=100")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = next(it, None)
            if value is None:
                raise ConfigError(f"--{key} needs a value, e.g. --{key}=VALUE")
        out[key.replace("-", "_")] = value
    return out


def bench_config(cfg: Config) -> Config:
    """``cfg`` as ``shardwise bench`` runs it: its synthetic rows hold document boundaries only with
    ``bench.document_len`` (else one document each), and ``data.packing`` says so to the plan made before launch
    (masks, the ring) as to the run."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, packing=cfg.bench.document_len > 0))


def load_config(path: str | None, overrides: dict[str, Any]) -> Config:
    """Defaults < DEFAULT_JOB (only without a file) < TOML file < overrides."""
    cfg = Config()
    layers: list[dict[str, Any]] = []
    if path is None:
        layers.append(DEFAULT_JOB)
    else:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML: {err}") from None
        flat = {}
        for section, body in data.items():
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: top-level key {section!r} must be a [section]")
            flat.update({f"{section}.{k}": v for k, v in body.items()})
        layers.append(flat)
    layers.append(overrides)
    for layer in layers:
        for key, value in layer.items():
            set_key(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Checks that need no model or processes. AdamW's and the schedule's settings are among them: torch would
    refuse some only inside every worker (a stack trace per rank), and others (a negative ``train.min_lr_ratio``)
    not at all. ``not value >= 0`` and the like refuse NaN too."""
    t, p = cfg.train, cfg.parallel
    for key, value in (("train.steps", t.steps), ("train.global_batch_size", t.global_batch_size),
                       ("train.micro_batch_size", t.micro_batch_size), ("train.seq_len", t.seq_len),
                       ("parallel.tp", p.tp), ("parallel.cp", p.cp), ("parallel.dp_replicate", p.dp_replicate),
                       ("bench.steps", cfg.bench.steps), ("data.val_batches", cfg.data.val_batches),
                       ("parallel.timeout_s", p.timeout_s), ("checkpoint.keep", cfg.checkpoint.keep),
                       ("data.max_bytes", cfg.data.max_bytes)):
        if value < 1:
            raise ConfigError(f"{key}={value} must be >= 1")
    for key, value in (("bench.warmup", cfg.bench.warmup), ("bench.document_len", cfg.bench.document_len),
                       ("checkpoint.every", cfg.checkpoint.every),
                       ("checkpoint.shutdown_timeout_s", cfg.checkpoint.shutdown_timeout_s),
                       ("train.eval_every", t.eval_every), ("train.gc_every", t.gc_every),
                       ("data.num_proc", cfg.data.num_proc), ("train.warmup_steps", t.warmup_steps),
                       ("train.weight_decay", t.weight_decay)):
        if not value >= 0:
            raise ConfigError(f"{key}={value} must be >= 0")
    for key, value in (("data.val_fraction", cfg.data.val_fraction), ("train.beta1", t.beta1),
                       ("train.beta2", t.beta2)):
        if not 0 <= value < 1:
            raise ConfigError(f"{key}={value} must be in [0, 1)")
    if not t.lr > 0:
        raise ConfigError(f"train.lr={t.lr} must be > 0")
    if not t.grad_clip >= 0:
        raise ConfigError(f"train.grad_clip={t.grad_clip} must be >= 0 (0: no clipping)")
    if not 0 <= t.min_lr_ratio <= 1:
        raise ConfigError(f"train.min_lr_ratio={t.min_lr_ratio} must be in [0, 1] (the last lr over train.lr)")
    parse_signals(cfg.checkpoint.on_signal)
    t.router_coefficient()
    if t.cudagraphs and t.compile == "true":
        raise ConfigError("train.cudagraphs=true replays eager blocks (compiled ones launch few kernels already); "
                          "set train.compile=auto or false")
    if p.async_tp and not (t.compile != "false" and not t.cudagraphs and p.shards_tokens()):
        raise ConfigError("parallel.async_tp=true needs train.compile (auto or true), train.cudagraphs=false, "
                          "parallel.tp > 1 and parallel.sequence_parallel=true (it pipelines the SP "
                          "all-gather/reduce-scatter in compiled blocks)")
    if p.tp_attention == "sequences" and p.tp > 1 and not p.holds_whole_rows():
        raise ConfigError("parallel.tp_attention=sequences needs parallel.sequence_parallel=true and parallel.cp=1 "
                          "(each TP rank must hold whole sequences); set parallel.tp_attention=heads")
    if p.dp_shard < 1 and p.dp_shard != -1:
        raise ConfigError(f"parallel.dp_shard={p.dp_shard} must be >= 1, or -1 for the rest of the world size")
