"""Run under torchrun (dp_shard=2 x tp=2, sequence and loss parallel): what the data path feeds the model.

Saves, for the pytest side to compare with single-process Hugging Face references:
the logits of a packed global batch and the held-out loss (``data.packing=true``, before any
update), the first-step loss and gradients with ``data.packing=false``, and the metrics records
of a 2-step ``train`` run with ``train.eval_every=2``.
"""

from __future__ import annotations

import torch
from _worker import run_worker

from shardwise.config import load_config
from shardwise.data import StepBatches, byte_tokenizer, load_data, pad_to_multiple
from shardwise.run import Run, build_run
from shardwise.train import evaluate, forward_backward, train
from shardwise.verify import full_copy


def _split(run: Run) -> tuple[int, int, int, int]:
    t = run.cfg.train
    return t.global_batch_size, t.micro_batch_size, run.meshes.dp.get_local_rank(), run.layout.dp


def packed(overrides: dict[str, str]) -> dict:
    cfg = load_config(None, {**overrides, "data.packing": "true"})
    run = build_run(cfg)
    train_samples, val_samples = load_data(cfg, byte_tokenizer())
    g = cfg.train.global_batch_size
    (batch,) = StepBatches(train_samples, g, g, 0, 1)(0)  # every DP rank runs the whole batch
    batch = pad_to_multiple(batch, run.layout.tp)
    with torch.no_grad():
        logits = run.model(batch.input_ids, batch.position_ids)
    val_loss = evaluate(run, StepBatches(val_samples, *_split(run)), cfg.data.val_batches)
    return {"logits": full_copy(logits), "input_ids": batch.input_ids, "val_loss": val_loss}


def unpacked(overrides: dict[str, str]) -> dict:
    cfg = load_config(None, {**overrides, "data.packing": "false"})
    run = build_run(cfg)
    train_samples, _ = load_data(cfg, byte_tokenizer())
    loss = float(forward_backward(run, StepBatches(train_samples, *_split(run))(0)))
    grads = {n.removeprefix("hf."): full_copy(p.grad) for n, p in run.model.named_parameters()}
    return {"loss": loss, "grads": grads}


def compare(overrides: dict) -> dict:
    results = {"packed": packed(overrides), "unpacked": unpacked(overrides)}
    results["records"] = train(load_config(None, {**overrides, "train.steps": "2", "train.eval_every": "2"}))
    return results


if __name__ == "__main__":
    run_worker(compare)
