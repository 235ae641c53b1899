"""The training loop: config -> mesh -> model -> parallelize -> steps."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from tqdm import tqdm

from shardwise import checkpoint
from shardwise.config import Config
from shardwise.data import Batch, StepBatches, build_tokenizer, load_data, pad_to_multiple
from shardwise.load import load_weights
from shardwise.loss import LossFn, global_token_count, loss_fn, reduce_over_dp
from shardwise.mesh import Layout, Meshes, build_mesh, init_distributed, resolve_layout
from shardwise.metrics import (
    MetricsWriter,
    device_peak_flops,
    drop_steps_after,
    flops_per_token,
    mfu,
    peak_mem_gib,
)
from shardwise.model import (
    CausalLM,
    build_meta_model,
    flop_params,
    hf_config,
    init_weights,
    num_params,
)
from shardwise.optim import build_optimizer, build_scheduler, clip_grad_norm_
from shardwise.parallelize import parallelize
from shardwise.tp import partial_grad_params, sum_partial_grads

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """``train.dtype=auto``: bf16 compute (fp32 master weights and reductions) on GPU, fp32 on CPU."""
    name = cfg.train.dtype
    if name == "auto":
        name = "bfloat16" if device.type == "cuda" else "float32"
    return DTYPES[name]


@dataclass
class Run:
    """Everything a step needs, built once."""

    cfg: Config
    device: torch.device
    layout: Layout
    meshes: Meshes
    model: CausalLM
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    @property
    def loss_parallel(self) -> bool:
        return self.layout.tp > 1 and self.cfg.parallel.loss_parallel

    @functools.cached_property
    def partial_grads(self) -> list[torch.nn.Parameter]:
        """Parameters whose gradients each TP rank holds only a part of (``shardwise.tp``)."""
        return partial_grad_params(self.model)

    @functools.cached_property
    def loss_fn(self) -> LossFn:
        return loss_fn(self.cfg.train.compiles(self.device.type))


def build_run(cfg: Config) -> Run:
    """Mesh, parallelized model (loaded from ``model.path`` or initialized), optimizer; in every rank."""
    device = init_distributed()
    layout = resolve_layout(cfg.parallel, dist.get_world_size())
    meshes = build_mesh(layout)
    model = build_meta_model(hf_config(cfg.model), DTYPES[cfg.model.dtype])
    parallelize(model, cfg, meshes, layout, compute_dtype(cfg, device))
    if cfg.model.path:
        load_weights(model, cfg.model.path, device)
    else:
        init_weights(model, device, cfg.train.seed)
    optimizer = build_optimizer(model, cfg.train, device)
    return Run(cfg, device, layout, meshes, model, optimizer, build_scheduler(optimizer, cfg.train))


def forward_backward(run: Run, micro_batches: list[Batch]) -> float:
    """Accumulate gradients over this rank's micro-batches; returns the step's global mean loss.

    FSDP reduce-scatters each micro-batch's gradients into the sharded ones (as TorchTitan and
    Megatron's distributed optimizer do), overlapped with the backward; ``parallel.defer_grad_reduce``
    instead keeps the unsharded fp32 gradients of the whole TP shard until the last micro-batch:
    one reduction per step for 4 bytes per parameter more, which an 8B model on 2 GPUs cannot afford.
    """
    micro_batches = [pad_to_multiple(b, run.layout.tp).to(run.device) for b in micro_batches]
    n_tokens = max(global_token_count([b.labels for b in micro_batches], run.meshes.dp), 1)
    # FSDP averages gradients over DP ranks; scaling by dp turns that average into the global sum.
    scale = run.layout.dp / n_tokens
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    for i, batch in enumerate(micro_batches):
        if isinstance(run.model, FSDPModule):
            run.model.set_requires_gradient_sync(i == len(micro_batches) - 1 or not run.cfg.parallel.defer_grad_reduce)
        logits = run.model(batch.input_ids, batch.position_ids, packed=batch.packed)
        summed = run.loss_fn(logits, batch.labels)
        (summed * scale).backward()
        loss_sum += summed.detach().double()
    sum_partial_grads(run.partial_grads, run.meshes.tp)
    return reduce_over_dp(loss_sum, run.meshes.dp) / n_tokens


@torch.no_grad()
def evaluate(run: Run, batches: StepBatches, n_batches: int) -> float:
    """Held-out loss: the token-level mean over ``n_batches`` global batches, as in ``forward_backward``."""
    micro_batches = [pad_to_multiple(b, run.layout.tp) for step in range(n_batches) for b in batches(step)]
    n_tokens = max(global_token_count([b.labels for b in micro_batches], run.meshes.dp), 1)
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    for batch in micro_batches:
        batch = batch.to(run.device)
        logits = run.model(batch.input_ids, batch.position_ids, packed=batch.packed)
        loss_sum += run.loss_fn(logits, batch.labels).double()
    return reduce_over_dp(loss_sum, run.meshes.dp) / n_tokens


def optimizer_step(run: Run) -> tuple[float, float]:
    """Clip, step, advance the schedule; returns (grad norm before clipping, lr used)."""
    params = [p for p in run.model.parameters() if p.grad is not None]
    grad_norm = clip_grad_norm_(params, run.cfg.train.grad_clip)
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return float(grad_norm), lr


def write_run_info(run: Run, out: Path) -> None:
    info = {
        "num_params": num_params(run.model),
        "world_size": run.layout.world_size,
        "mesh": {"dp_replicate": run.layout.dp_replicate, "dp_shard": run.layout.dp_shard, "tp": run.layout.tp},
        "device": run.device.type,
        "model_type": run.model.config.model_type,
        "config": run.cfg.to_dict(),
    }
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def train(cfg: Config) -> list[dict]:
    """Run (or resume and finish) ``train.steps`` steps, checkpointing as configured; rank 0 writes
    run.json, metrics.jsonl (appended to on resume), tb/ and summary.json. Returns this process's records."""
    run = build_run(cfg)
    first = checkpoint.resume(run, checkpoint.resume_dir(cfg))
    rank0 = dist.get_rank() == 0
    out = Path(cfg.output.dir)
    tokenizer = build_tokenizer(cfg)
    train_samples, val_samples = load_data(cfg, tokenizer)
    split = (cfg.train.global_batch_size, cfg.train.micro_batch_size, run.meshes.dp.get_local_rank(), run.layout.dp)
    batches = StepBatches(train_samples, *split)
    val_batches = StepBatches(val_samples, *split) if val_samples is not None and cfg.train.eval_every else None
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
        drop_steps_after(out / "metrics.jsonl", first)
        write_run_info(run, out)
    writer = MetricsWriter(out, rank0, fresh=first == 0)
    c = run.model.config
    flops_token = flops_per_token(flop_params(run.model), c.num_hidden_layers, c.hidden_size, cfg.train.seq_len)
    peak = device_peak_flops(run.device)
    step_tokens = cfg.train.global_batch_size * cfg.train.seq_len
    records, start = [], time.perf_counter()
    bar = tqdm(range(first, cfg.train.steps), initial=first, total=cfg.train.steps,
               disable=not (rank0 and cfg.output.progress), desc="train", unit="step")
    for step in bar:
        t0 = time.perf_counter()
        loss = forward_backward(run, batches(step))
        grad_norm, lr = optimizer_step(run)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        tps = step_tokens / dt
        per_device = tps / run.layout.world_size
        record = {
            "step": step + 1, "loss": loss, "grad_norm": grad_norm, "lr": lr,
            "tokens": step_tokens * (step + 1), "tokens_per_s": tps, "tokens_per_s_per_device": per_device,
            "mfu": mfu(per_device, flops_token, peak), "peak_mem_gib": peak_mem_gib(run.device),
            "elapsed_s": time.perf_counter() - start,
        }
        evaluate_now = val_batches is not None and (step + 1) % cfg.train.eval_every == 0
        record["val_loss"] = evaluate(run, val_batches, cfg.data.val_batches) if evaluate_now else None
        records.append(record)
        writer.write(record)
        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
        if checkpoint.due(cfg, step + 1):
            checkpoint.save(run, step + 1, tokenizer)
    bar.close()
    writer.close(records, run.layout.world_size)
    return records
