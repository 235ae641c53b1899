"""The training loop: config -> mesh -> model -> parallelize -> steps, and what it does when a step fails."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from shardwise import checkpoint, inject
from shardwise.collect import Collector
from shardwise.config import Config, parse_signals
from shardwise.data import Batch, StepBatches, build_tokenizer, load_data
from shardwise.faults import NONFINITE_EXIT, PREEMPTED_EXIT, Stop, StopSignals, Watchdog, nonfinite
from shardwise.graphs import keep_grads
from shardwise.loss import global_token_count, reduce_over_ranks
from shardwise.metrics import (
    MetricsWriter,
    device_peak_flops,
    drop_steps_after,
    flops_per_token,
    mfu,
    peak_mem_gib,
)
from shardwise.model import flop_params, num_params
from shardwise.optim import clip_grad_norm_, step_if
from shardwise.parallelize import prepare_micro_batch
from shardwise.run import Run, build_run
from shardwise.tp import sum_partial_grads


def forward_backward(run: Run, micro_batches: list[Batch]) -> torch.Tensor:
    """Accumulate gradients over this rank's micro-batches; returns the step's global mean loss, a float64 scalar
    on the device that nothing here reads (the host queues the whole backward without waiting for the GPU).

    FSDP reduce-scatters each micro-batch's gradients into the sharded ones (as TorchTitan and
    Megatron's distributed optimizer do), overlapped with the backward; ``parallel.defer_grad_reduce``
    instead keeps the unsharded fp32 gradients of the whole TP shard until the last micro-batch:
    one reduction per step for 4 bytes per parameter more, which an 8B model on 2 GPUs cannot afford.
    Blocks kept gathered from forward to backward stay gathered until the last micro-batch
    (``parallelize.prepare_micro_batch``). A mixture of experts' load-balancing loss (``run.router``) joins the
    gradients, not the returned loss, which stays the token cross-entropy (``RouterLoss.step_mean``).
    """
    micro_batches = [run.local_batch(b).to(run.device) for b in micro_batches]
    n_tokens = global_token_count([b.labels for b in micro_batches], run.meshes.dp_cp)
    # FSDP averages gradients over its dp x cp ranks; scaling by their count turns that average into the global sum.
    scale = run.layout.dp_cp / n_tokens
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    if run.cfg.train.cudagraphs:
        keep_grads(run.model)
    for i, batch in enumerate(micro_batches):
        if isinstance(run.model, FSDPModule):
            prepare_micro_batch(run.model, i == len(micro_batches) - 1, keep_gathered=not run.cfg.parallel.reshards(),
                                defer_grad_reduce=run.cfg.parallel.defer_grad_reduce)
        if run.router:
            run.router.begin(batch.input_ids, run.cfg.train.seq_len, first=i == 0)
        summed = run.loss_fn(run.logits(batch), batch.labels)
        loss = summed * scale.to(summed.dtype)
        if run.router:
            # the mean over every DP rank's micro-batches, once FSDP has averaged over dp x cp ranks
            loss = loss + run.router.loss() * (run.router.coef * run.layout.cp / len(micro_batches))
        loss.backward()
        loss_sum += summed.detach().double()
    sum_partial_grads(run.partial_grads, run.meshes.tp)
    if not run.router:
        return reduce_over_ranks(loss_sum, run.meshes.dp_cp) / n_tokens
    # one reduction for both sums; each CP rank holds the router's whole, so its mean divides by dp x cp
    loss_total, router_total = reduce_over_ranks(torch.stack([loss_sum, run.router.step_sum.double()]),
                                                 run.meshes.dp_cp)
    run.router.step_mean = router_total / (run.layout.dp_cp * len(micro_batches))
    return loss_total / n_tokens


@torch.no_grad()
def evaluate(run: Run, batches: StepBatches, n_batches: int) -> float:
    """Held-out loss: the token-level mean over ``n_batches`` global batches, as in ``forward_backward``."""
    micro_batches = [run.local_batch(b) for step in range(n_batches) for b in batches(step)]
    n_tokens = global_token_count([b.labels for b in micro_batches], run.meshes.dp_cp)
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    for batch in micro_batches:
        batch = batch.to(run.device)
        loss_sum += run.loss_fn(run.logits(batch), batch.labels).double()
    return float(reduce_over_ranks(loss_sum, run.meshes.dp_cp) / n_tokens)


def optimizer_step(run: Run, loss: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Clip, step unless the loss or the gradient norm is not finite, advance the schedule either way.

    Returns the gradient norm before clipping, a device scalar like the loss, and the lr used. With a fused
    optimizer nothing here waits for the GPU (``optim.step_if``), so the host queues clipping and update behind
    the backward; the caller reads both values afterwards, and ``faults.nonfinite`` names a failed check. A failed
    step leaves the weights and the optimizer state (moments, step count) as they were and drops its gradients;
    the schedule still advances, so the lr stays a function of the step, like the data.
    """
    params = [p for group in run.optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_norm = clip_grad_norm_(params, run.cfg.train.grad_clip)
    finite = torch.isfinite(grad_norm)
    if loss is not None:
        finite &= torch.isfinite(loss).to(finite.device)
    lr = run.scheduler.get_last_lr()[0]
    with warnings.catch_warnings():  # a skipped first step: "lr_scheduler.step() before optimizer.step()" is meant
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*optimizer.step.*")
        step_if(run.optimizer, finite)
        run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=not run.cfg.train.cudagraphs)  # CUDA graphs add into kept gradients
    return grad_norm, lr


def write_run_info(run: Run, out: Path) -> None:
    info = {
        "num_params": num_params(run.model),
        "world_size": run.layout.world_size,
        "mesh": run.layout.sizes(),
        "device": run.device.type,
        "model_type": run.model.config.model_type,
        "config": run.cfg.to_dict(),
    }
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def _on_nonfinite(cfg: Config, step: int, failed: str) -> None:
    """``train.on_nonfinite``: ``stop`` ends the run (every rank: the values are global), ``skip`` warns."""
    if cfg.train.on_nonfinite == "stop":
        raise Stop(f"error: step {step}: {failed} before the optimizer step; stopped without updating the weights "
                   "(train.on_nonfinite=stop); continue from the newest checkpoint with --checkpoint.resume=auto, "
                   "or set train.on_nonfinite=skip", NONFINITE_EXIT)
    if dist.get_rank() == 0:
        print(f"shardwise: warning: step {step}: {failed}; skipped the step, weights and optimizer state unchanged "
              "(train.on_nonfinite=skip)", file=sys.stderr, flush=True)


def _data(run: Run) -> tuple[PreTrainedTokenizerBase, StepBatches, StepBatches | None]:
    """The tokenizer, and this rank's training and held-out batches (None: no evaluation)."""
    cfg = run.cfg
    tokenizer = build_tokenizer(cfg)
    train_samples, val_samples = load_data(cfg, tokenizer)
    split = (cfg.train.global_batch_size, cfg.train.micro_batch_size, run.meshes.dp.get_local_rank(), run.layout.dp)
    val_batches = StepBatches(val_samples, *split) if val_samples is not None and cfg.train.eval_every else None
    return tokenizer, StepBatches(train_samples, *split), val_batches


def _outputs(run: Run, first: int) -> MetricsWriter:
    """Rank 0: ``output.dir`` with run.json, and metrics cut back to ``first`` (the resumed step)."""
    out, rank0 = Path(run.cfg.output.dir), dist.get_rank() == 0
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
        drop_steps_after(out / "metrics.jsonl", first)
        write_run_info(run, out)
    return MetricsWriter(out, rank0, fresh=first == 0)


def train(cfg: Config) -> list[dict]:
    """Run (or resume and finish) ``train.steps`` steps, checkpointing as configured; rank 0 writes
    run.json, metrics.jsonl (appended to on resume), tb/ and summary.json. Returns this process's records.

    Stops early, in every rank after the same step, with ``faults.Stop``: on a ``checkpoint.on_signal``
    signal (after saving a checkpoint) and on a non-finite step with ``train.on_nonfinite=stop``. A
    step, save or evaluation that hangs, or a collective that fails, ends this process (``Watchdog``).
    """
    run = build_run(cfg)
    first, skipped = checkpoint.resume(run)
    rank0 = dist.get_rank() == 0
    tokenizer, batches, val_batches = _data(run)
    writer = _outputs(run, first)
    c = run.model.config
    flops_token = flops_per_token(flop_params(run.model), c.num_hidden_layers, c.hidden_size, cfg.train.seq_len)
    peak = device_peak_flops(run.device)
    step_tokens = cfg.train.global_batch_size * cfg.train.seq_len
    records, start = [], time.perf_counter()
    bar = tqdm(range(first, cfg.train.steps), initial=first, total=cfg.train.steps,
               disable=not (rank0 and cfg.output.progress), desc="train", unit="step")
    signals = StopSignals(parse_signals(cfg.checkpoint.on_signal), run.device, cfg.checkpoint.shutdown_timeout_s)
    watchdog = Watchdog(cfg.parallel.timeout_s, dist.get_rank())
    collector = Collector(cfg.train.gc_every)
    try:
        for step in bar:
            watchdog.phase(f"step {step + 1}")
            t0 = time.perf_counter()
            loss = inject.mid_step(run, step + 1, forward_backward(run, batches(step)))
            grad_norm, lr = optimizer_step(run, loss)
            loss, grad_norm = float(loss), float(grad_norm)  # the step's one wait for the GPU
            failed = nonfinite(loss, grad_norm)
            if failed:
                _on_nonfinite(cfg, step + 1, failed)
                skipped += 1
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            tps = step_tokens / dt
            per_device = tps / run.layout.world_size
            record = {
                "step": step + 1, "loss": loss, "grad_norm": grad_norm, "lr": lr,
                "tokens": step_tokens * (step + 1), "tokens_per_s": tps, "tokens_per_s_per_device": per_device,
                "mfu": mfu(per_device, flops_token, peak), "peak_mem_gib": peak_mem_gib(run.device),
                "elapsed_s": time.perf_counter() - start, "skipped_steps": skipped,
            }
            if run.router:
                record["router_loss"] = float(run.router.step_mean)
            evaluate_now = val_batches is not None and (step + 1) % cfg.train.eval_every == 0
            watchdog.phase(f"evaluation after step {step + 1}")
            record["val_loss"] = evaluate(run, val_batches, cfg.data.val_batches) if evaluate_now else None
            records.append(record)
            writer.write(record)
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
            collector.step()
            stop = signals.agreed() if step + 1 < cfg.train.steps else None
            if checkpoint.due(cfg, step + 1) or stop:
                watchdog.phase(f"saving step {step + 1}")
                checkpoint.save(run, step + 1, tokenizer, skipped)
                signals.fits(time.perf_counter() - t0)
            if stop:
                writer.flush()
                raise Stop(f"{stop.name} received: stopped after step {step + 1} and saved "
                           f"{checkpoint.checkpoints_root(cfg) / f'step-{step + 1}'}; continue with "
                           "--checkpoint.resume=auto", PREEMPTED_EXIT)
            watchdog.phase(None)
    except RuntimeError as err:
        if isinstance(err, dist.DistError) or "gloo" in str(err):  # a peer died: gloo's errors come as RuntimeError
            watchdog.broken(err)
        raise
    finally:
        collector.close()
        watchdog.close()
        signals.close()
        bar.close()
        run.close()
    writer.close(records, run.layout.world_size)
    return records
