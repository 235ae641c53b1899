"""``shardwise verify``: prove a layout numerically on CPU before spending accelerator hours on it.

A toy model of the configured architecture (``small_config``: same ``model_type``, head counts,
head-width and MLP ratios, tie flag, biases and norms; 2 layers, small widths, a 320-token
vocabulary rounded up to a multiple of tp) trains ``STEPS`` steps on CPU gloo processes with the
configured layout (dp_replicate, dp_shard, cp, tp, sequence and loss parallelism, activation
checkpointing), through the trainer's own ``build_run`` / ``forward_backward`` /
``optimizer_step``. A reference trains the same weights on the same bytes of text, packed into
short documents, in one process: a plain Hugging Face model in fp32 with its own forward, torch's
AdamW and ``clip_grad_norm_``, and the token mean over the global batch. Then
``compare`` checks the loss, the logits, every parameter's gradient, the gradient norms and the
final weights. The test suite proves every layout with the same functions.

Run as a module under torchrun (``python -m shardwise.verify --presets JSON --cases JSON --out FILE``)
it is the worker: it registers the given model presets (the toy model travels as one, an HF config
dict, so no model folder is involved), trains each case of the JSON list of config overrides and
saves what rank 0 saw.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM, PretrainedConfig

from shardwise.config import Config, ConfigError, load_config
from shardwise.corpus import Documents
from shardwise.cp import gather_sequence
from shardwise.data import Batch, StepBatches, byte_tokenizer, load_tokens, sample_kind
from shardwise.launch import exit_finished_worker, launch, preflight, refuse
from shardwise.loss import IGNORE_INDEX
from shardwise.mesh import resolve_layout
from shardwise.model import PRESETS, CausalLM, hf_config, init_weights, num_params
from shardwise.optim import lr_lambda
from shardwise.plan import param_layout
from shardwise.router import coefficient
from shardwise.run import build_run
from shardwise.tp import Group
from shardwise.train import forward_backward, optimizer_step

# Gathering a (_StridedShard, Shard) tensor whole takes two all-gathers; verify does it once per tensor.
logging.getLogger("torch.distributed.tensor._redistribute").addFilter(
    lambda record: "sequential all_gather" not in record.getMessage())

STEPS = 2
# seq_len 31 is odd so that sequence parallelism must pad; two micro-batches of 2 per DP rank
# exercise gradient accumulation; lr 1e-2 makes optimizer mistakes visible in two steps.
RUN = {"train.seq_len": 31, "train.micro_batch_size": 2, "train.steps": STEPS, "train.lr": 1e-2,
       "train.warmup_steps": 1, "train.seed": 7, "train.dtype": "float32", "train.compile": "false",
       "data.path": "", "data.tokenizer": "", "data.max_bytes": 200_000, "output.progress": False,
       "model.path": "", "model.preset": "verify-toy"}
VOCAB = 320  # the byte tokenizer's 257 ids fit
# The user's settings a verify case keeps: the layout, and what decides which attention path runs (packed rows
# take CP's masked all-gather path, one document per row its unmasked one or the ring).
LAYOUT_KEYS = ("parallel.dp_replicate", "parallel.dp_shard", "parallel.cp", "parallel.cp_exchange", "parallel.tp",
               "parallel.sequence_parallel", "parallel.loss_parallel", "parallel.tp_attention",
               "train.activation_checkpointing", "model.attn_implementation", "data.packing", "train.router_aux_loss")
HEAD_DIM = 8  # even, for rotary embeddings
WINDOW = 8  # sliding windows shorter than RUN's seq_len
MLP_WIDTHS = ("intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size")
TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id")
# Relative errors allowed in fp32. Weights get more room: Adam turns the rounding noise of
# gradients that are zero in theory (e.g. k_proj.bias) into lr-sized steps. The gradient norm after
# the first step is taken on those weights, so it gets their room: tiny-gemma3 at tp=2 measured 1.05e-4
# at step 2 on an AVX-512 CPU (1e-6 at step 1), where other machines had passed it at 1e-4.
TOLERANCE = {"parameter count": 0.0, "loss, first step": 1e-5, "logits at init": 1e-5, "gradients, first step": 1e-4,
             "loss, every step": 1e-4, "gradient norm, first step": 1e-4, "gradient norm, later steps": 1e-3,
             "weights after training": 1e-3}


def resize(config: PretrainedConfig, **changes: Any) -> PretrainedConfig:
    """A copy of ``config`` with ``changes``; per-layer lists (``layer_types``) follow ``num_hidden_layers``."""
    small = copy.deepcopy(config)
    for key, value in changes.items():
        setattr(small, key, value)
    if getattr(small, "layer_types", None):
        small.layer_types = list(small.layer_types)[: small.num_hidden_layers]
    return small


def small_config(config: PretrainedConfig, tp: int) -> PretrainedConfig:
    """The same architecture at toy size: 2 layers, head_dim 8, the hidden/query-width and MLP ratios kept.

    What the architecture does beyond that stays on: head counts (so KV replication too), soft-capping
    values, multipliers, experts and experts per token (each expert's widths scaled like the MLP's),
    sliding windows (shortened to ``WINDOW`` tokens so that they cut into the toy's sequences) and
    LongRoPE factors (one per rotary pair of the toy's heads).
    """
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_dim = config.num_attention_heads * head_dim
    hidden = 2 * max(1, round(config.hidden_size / q_dim * config.num_attention_heads * HEAD_DIM / 2))

    def width(n: int) -> int:  # an MLP width at the toy's hidden size, divisible by tp
        return tp * max(1, round(n / config.hidden_size * hidden / tp))

    vocab = tp * -(-VOCAB // tp)
    changes = {"num_hidden_layers": 2, "hidden_size": hidden, "head_dim": HEAD_DIM, "vocab_size": vocab}
    changes |= {key: width(getattr(config, key)) for key in MLP_WIDTHS if getattr(config, key, None)}
    # token ids beyond the toy vocabulary (a padding row the embedding could not hold) are dropped
    changes |= {key: None for key in TOKEN_IDS if isinstance(getattr(config, key, None), int)
                and getattr(config, key) >= vocab}
    if getattr(config, "sliding_window", None):
        changes["sliding_window"] = min(config.sliding_window, WINDOW)
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "short_factor" in rope:  # LongRoPE (Phi-3 128k): one factor per rotary pair
        pairs = int(HEAD_DIM * rope.get("partial_rotary_factor", 1.0)) // 2
        changes["rope_parameters"] = {**rope, "short_factor": rope["short_factor"][:pairs],
                                      "long_factor": rope["long_factor"][:pairs]}
    return resize(config, **changes)


def preset_spec(config: PretrainedConfig) -> dict[str, Any]:
    """``config`` as a JSON-able ``model.preset`` entry (what ``hf_config`` turns back into the same config)."""
    return config.to_diff_dict()


def register_presets(presets: dict[str, dict[str, Any]]) -> None:
    """Make these specs loadable as ``model.preset`` names in this process."""
    PRESETS.update(presets)


def verify_overrides(cfg: Config, dp: int) -> dict[str, Any]:
    """The config a verify case runs: the user's layout, verify's own short run on the toy preset, two micro-batches
    per DP rank (of ``tp`` sequences where each TP rank attends over its own, ``parallel.tp_attention=sequences``)."""
    layout = {key: getattr(getattr(cfg, key.split(".")[0]), key.split(".")[1]) for key in LAYOUT_KEYS}
    p, micro = cfg.parallel, RUN["train.micro_batch_size"]
    if p.attention() == "sequences":
        micro = -(-micro // p.tp) * p.tp
    return {**layout, **RUN, "train.seq_len": seq_len(p.cp, p.tp), "train.micro_batch_size": micro,
            "train.global_batch_size": 2 * dp * micro}


def seq_len(cp: int, tp: int) -> int:
    """``RUN``'s odd length, which TP pads; context parallelism cuts rows into ``2·cp`` chunks of ``tp`` shards
    unpadded (``cp.errors``), so it gets the next multiple of ``2·cp·tp``."""
    multiple = 2 * cp * tp if cp > 1 else 1
    return -(-RUN["train.seq_len"] // multiple) * multiple


def step_batches(cfg: Config, dp_rank: int, dp: int, micro_batch: int | None = None) -> StepBatches:
    """This DP rank's share of each step: the built-in corpus (``data.max_bytes`` of it) in bytes, cut into
    documents of seeded random lengths from 1 to ``2 * train.seq_len`` tokens and packed, so that most rows
    hold a document boundary and documents cross the token shards of sequence and context parallelism; with
    ``data.packing=false``, one document per row (cut or padded), so that attention runs its unmasked paths.

    Text, on which the tolerances were set: on uniform random tokens, Adam's lr-sized first steps on
    near-zero gradients put untied Qwen3's embedding 1.5e-3 to 2.2e-3 off the reference after three
    steps, in every layout, above the weights tolerance.
    """
    t = cfg.train
    tokens = load_tokens(cfg.data, byte_tokenizer())
    gen = torch.Generator().manual_seed(t.seed)
    lengths = torch.randint(1, 2 * t.seq_len + 1, (2 * len(tokens) // t.seq_len + 1,), generator=gen)
    docs = Documents.from_tokens(tokens, lengths.numpy())
    rows = sample_kind(cfg.data)(docs, t.seq_len, t.seed)
    return StepBatches(rows, t.global_batch_size, micro_batch or t.micro_batch_size, dp_rank, dp)


def full_copy(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a DTensor gathered from every rank) as a detached CPU copy, to compare across layouts."""
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu().clone()


def run_parallel(cfg: Config) -> dict[str, Any]:
    """Train ``cfg`` with shardwise in every rank; returns what rank 0 needs to compare (full tensors)."""
    run = build_run(cfg)
    layout = param_layout(run.model)  # before any forward: FSDP keeps the root gathered after one
    probe = run.local_batch(step_batches(cfg, 0, run.layout.dp)(0)[0])  # the same rows on every DP rank
    with torch.no_grad():
        logits = gather_sequence(full_copy(run.logits(probe)), Group.of(run.meshes.cp))
    batches = step_batches(cfg, run.meshes.dp.get_local_rank(), run.layout.dp)
    out = {"num_params": num_params(run.model), "logits": logits, "layout": layout, "losses": [], "grad_norms": []}
    for step in range(cfg.train.steps):
        out["losses"].append(float(forward_backward(run, batches(step))))
        if step == 0:
            out["grads"] = {n.removeprefix("hf."): full_copy(p.grad) for n, p in run.model.named_parameters()}
        out["grad_norms"].append(float(optimizer_step(run)[0]))
    out["weights"] = {n.removeprefix("hf."): full_copy(p) for n, p in run.model.named_parameters()}
    return out


def run_reference(cfg: Config) -> dict[str, Any]:
    """The same training as a plain HF model in one process: its forward, torch's AdamW and clipping."""
    t = cfg.train
    hf = AutoModelForCausalLM.from_config(hf_config(cfg.model), dtype=torch.float32)
    init_weights(CausalLM(hf), torch.device("cpu"), t.seed)
    decay = [p for p in hf.parameters() if p.ndim >= 2]
    no_decay = [p for p in hf.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=t.lr, betas=(t.beta1, t.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(t))
    batches = step_batches(cfg, 0, 1, micro_batch=t.global_batch_size)
    rows = slice(0, t.micro_batch_size)
    probe = batches(0)[0]
    with torch.no_grad():
        logits = hf(input_ids=probe.input_ids[rows], position_ids=probe.position_ids[rows]).logits
    out = {"num_params": sum(p.numel() for p in hf.parameters()), "logits": logits, "losses": [], "grad_norms": []}
    coef = coefficient(cfg, hf.config)
    for step in range(t.steps):
        (batch,) = batches(step)
        loss, objective = reference_loss(hf, batch, t.micro_batch_size, coef)
        objective.backward()
        out["losses"].append(loss.item())
        if step == 0:
            out["grads"] = {n: p.grad.clone() for n, p in hf.named_parameters()}
        out["grad_norms"].append(torch.nn.utils.clip_grad_norm_(hf.parameters(), t.grad_clip).item())
        opt.step()
        sched.step()
        opt.zero_grad()
    out["weights"] = {n: p.detach().clone() for n, p in hf.named_parameters()}
    return out


def reference_loss(hf: torch.nn.Module, batch: Batch, micro_batch: int, coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch's token-mean cross-entropy from the plain HF model, and what to differentiate: that, plus
    ``coef`` times the mean of transformers' own ``aux_loss`` (the routers' load-balancing loss) over micro-batches
    of ``micro_batch`` rows, as the trainer's step adds it."""
    if not coef:
        logits = hf(input_ids=batch.input_ids, position_ids=batch.position_ids).logits  # packed: HF masks documents
        loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten())
        return loss, loss
    summed, aux = torch.zeros(()), torch.zeros(())
    starts = range(0, batch.input_ids.shape[0], micro_batch)
    for start in starts:
        rows = slice(start, start + micro_batch)
        out = hf(input_ids=batch.input_ids[rows], position_ids=batch.position_ids[rows], output_router_logits=True)
        summed = summed + F.cross_entropy(out.logits.flatten(0, 1), batch.labels[rows].flatten(), reduction="sum")
        aux = aux + out.aux_loss
    loss = summed / (batch.labels != IGNORE_INDEX).sum()
    return loss, loss + coef * aux / len(starts)


@dataclass
class Check:
    """One comparison: its worst relative error, where that was, and whether it is within tolerance."""

    name: str
    error: float
    where: str
    ok: bool

    def line(self) -> str:
        where = f" at {self.where}" if self.where else ""
        return (f"{'PASS' if self.ok else 'FAIL'}  {self.name:<27} worst relative error {self.error:.2e}{where} "
                f"(tolerance {TOLERANCE[self.name]:.0e})")


def rel_err(a: torch.Tensor | float, b: torch.Tensor | float) -> float:
    """``|a - b| / |b|`` (L2 norms for tensors); NaN counts as infinitely wrong."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    err = float((a - b).norm() / b.norm().clamp_min(1e-12))
    return float("inf") if math.isnan(err) else err


def _worst(name: str, got: dict[str, Any], ref: dict[str, Any]) -> Check:
    """The entry of ``got``/``ref`` (a name or a step) with the largest relative error; a missing one fails."""
    keys = sorted(set(got) | set(ref))
    errors = {k: rel_err(got[k], ref[k]) if k in got and k in ref else float("inf") for k in keys}
    where = max(errors, key=errors.get)
    return Check(name, errors[where], str(where), errors[where] <= TOLERANCE[name])


def _by_step(values: list[float], first: int = 1) -> dict[str, float]:
    """``values`` (one per step, from step 1) keyed by step, from step ``first`` on."""
    return {f"step {i + 1}": v for i, v in enumerate(values) if i + 1 >= first}


def compare(got: dict[str, Any], ref: dict[str, Any]) -> list[Check]:
    """Every check of a parallel run (``run_parallel``) against the reference (``run_reference``)."""
    seq = ref["logits"].shape[1]  # the parallel logits may carry sequence padding
    return [
        _worst("parameter count", {"": got["num_params"]}, {"": ref["num_params"]}),
        _worst("loss, first step", {"": got["losses"][0]}, {"": ref["losses"][0]}),
        _worst("logits at init", {"": got["logits"][:, :seq]}, {"": ref["logits"]}),
        _worst("gradients, first step", got["grads"], ref["grads"]),
        _worst("loss, every step", _by_step(got["losses"]), _by_step(ref["losses"])),
        _worst("gradient norm, first step", {"": got["grad_norms"][0]}, {"": ref["grad_norms"][0]}),
        _worst("gradient norm, later steps", _by_step(got["grad_norms"], first=2), _by_step(ref["grad_norms"], first=2)),
        _worst("weights after training", got["weights"], ref["weights"]),
    ]


_ATTENTION = {"heads": "attention split by heads, ", "sequences": "attention per sequence, "}


def _describe(config: PretrainedConfig, cfg: Config, world: int) -> str:
    p, layout = cfg.parallel, resolve_layout(cfg.parallel, world)
    return (f"{config.model_type} at toy size ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
            f"{config.num_attention_heads} heads / {config.num_key_value_heads} KV heads, vocab {config.vocab_size}, "
            f"{'tied' if config.tie_word_embeddings else 'untied'}); dp_replicate={layout.dp_replicate} "
            f"dp_shard={layout.dp_shard} cp={layout.cp} tp={layout.tp}, sequence parallel "
            f"{'on' if p.sequence_parallel else 'off'}, loss parallel {'on' if p.loss_parallel else 'off'}, "
            f"{_ATTENTION[p.attention()] if layout.tp > 1 else ''}activation checkpointing "
            f"{cfg.train.activation_checkpointing}; {cfg.train.steps} steps on {world} CPU processes vs. 1 process")


def verify_layouts(cfg: Config) -> list[Config]:
    """The layouts a verify checks: the configured one, or under ``parallel.tp_attention=auto`` with TP, sequence
    parallelism and no CP both ways of attending, as GPUs choose between them run by run (``launch.resolve_auto``)."""
    p = cfg.parallel
    if not (p.tp_attention == "auto" and p.tp > 1 and p.holds_whole_rows()):
        return [cfg]
    return [dataclasses.replace(cfg, parallel=dataclasses.replace(p, tp_attention=mode))
            for mode in ("heads", "sequences")]


def run_verify(cfg: Config, world_size: int) -> int:
    """The CLI command: toy model, reference here, the layout (each of ``verify_layouts``) in ``world_size`` CPU
    processes, compare."""
    start = time.perf_counter()
    presets = {RUN["model.preset"]: preset_spec(small_config(hf_config(cfg.model), cfg.parallel.tp))}
    register_presets(presets)
    dp = world_size // (cfg.parallel.tp * cfg.parallel.cp)
    checks: list[Check] = []
    for layout in verify_layouts(cfg):
        result = _verify_layout(verify_overrides(layout, dp), presets, world_size)
        if isinstance(result, int):
            return result
        checks += result
    ok = all(c.ok for c in checks)
    print(f"verify: {'PASS' if ok else 'FAIL'} ({sum(c.ok for c in checks)}/{len(checks)} checks) "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    return 0 if ok else 1


def _verify_layout(overrides: dict[str, Any], presets: dict[str, Any], world_size: int) -> list[Check] | int:
    """One layout's checks, printed; or the exit code of parallel processes that did not finish."""
    vcfg = load_config(None, overrides)
    preflight(vcfg, world_size, "verify")
    print(f"verify: {_describe(hf_config(vcfg.model), vcfg, world_size)}", flush=True)
    ref = run_reference(vcfg)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the workers run on CPU, also on a GPU machine
    with tempfile.TemporaryDirectory(prefix="shardwise-verify-") as tmp:
        out = Path(tmp) / "results.pt"
        code = launch("shardwise.verify", ["--presets", json.dumps(presets), "--cases", json.dumps([overrides]),
                                           "--out", str(out)], world_size)
        if code:
            print(f"FAIL  the parallel run did not finish (exit code {code})", flush=True)
            return code
        checks = compare(torch.load(out, weights_only=True)[0], ref)
    print("\n".join(c.line() for c in checks), flush=True)
    return checks


def worker_main(argv: list[str]) -> int:
    """torchrun entry: train each case (a dict of config overrides); rank 0 saves the list of results."""
    parser = argparse.ArgumentParser(prog="python -m shardwise.verify")
    parser.add_argument("--presets", default="{}", help="JSON dict of model presets to register: name -> HF config")
    parser.add_argument("--cases", required=True, help="JSON list of config-override dicts")
    parser.add_argument("--out", required=True, help="where rank 0 saves the results (torch.save)")
    args = parser.parse_args(argv)
    register_presets(json.loads(args.presets))
    try:
        results = [run_parallel(load_config(None, case)) for case in json.loads(args.cases)]
    except ConfigError as err:
        return refuse(err)
    if dist.get_rank() == 0:
        torch.save(results, args.out)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    # as shardwise.cli's workers: gloo's threads can abort the interpreter's finalization
    exit_finished_worker(worker_main(sys.argv[1:]))
