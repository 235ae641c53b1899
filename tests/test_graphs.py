"""``shardwise.graphs``: the blocks replayed as CUDA graphs give the eager blocks' numbers, and what graphs cannot
replay is refused before launch.

CUDA graphs need a GPU; here ``make_graphed_callables`` is replaced by a CPU stand-in that keeps its contract
(fixed input buffers, outputs and gradients overwritten by the next call; ``_graphs_worker.py``), so the test
proves shardwise's side of it: which tensors feed the graphs, how parameters are read while capturing, and how
gradients accumulate over micro-batches. BENCHMARKS.md has the same comparison on GPUs.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_same_steps, torchrun

from shardwise.config import ConfigError, load_config
from shardwise.graphs import errors
from shardwise.mesh import Layout
from shardwise.model import hf_config
from shardwise.parallelize import check_cudagraphs

CASES = {  # tp, preset, checkpointing, seq_len
    "tp2-qwen2-full": (2, "tiny-qwen2", "full", 32),
    "tp1-qwen2-full": (1, "tiny-qwen2", "full", 32),
    "tp2-llama-selective": (2, "tiny-llama", "selective", 32),
    # sliding and full layers: two masks and two rotary tables, each shared by the blocks of its kind
    "tp2-gemma3-none": (2, "tiny-gemma3", "none", 96),
}


@pytest.mark.parametrize("case", CASES)
def test_graphed_blocks_train_as_eager_blocks(tmp_path, case):
    """TP (DTensor parameters) and one device (plain ones), bf16 compute on fp32 master weights, tied and untied
    embeddings, every checkpointing mode, 4 micro-batches a step: two steps through the graphs give bit for bit
    the losses, gradients and weights of eager blocks."""
    tp, preset, checkpointing, seq_len = CASES[case]
    out = tmp_path / "results.pt"
    overrides = {"model.preset": preset, "model.dtype": "float32", "train.dtype": "bfloat16",
                 "parallel.tp": tp, "parallel.dp_shard": 1, "train.activation_checkpointing": checkpointing,
                 "train.seq_len": seq_len, "train.global_batch_size": 4, "train.micro_batch_size": 1,
                 "train.compile": "false", "output.progress": False}
    torchrun(tp, "_graphs_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    eager, graphed = (r := torch.load(out))["eager"], r["graphed"]
    assert r["captures"] == 1 and graphed["captures"] == 1  # one capture, replayed for 8 micro-batches
    assert_same_steps(graphed, eager)


def test_training_frees_its_graphs_before_the_group_goes(tmp_path):
    """NCCL cannot destroy a communicator while a CUDA graph that captured its collectives lives, so a TP run with
    graphs never exited (pytorch/pytorch#115388): ``train`` frees every graph it captured before it returns, even
    with Python's collector off (the graphed callables sit in reference cycles)."""
    out = tmp_path / "results.pt"
    overrides = {"what": "released", "model.preset": "tiny-qwen2", "parallel.tp": 2, "parallel.dp_shard": 1,
                 "train.cudagraphs": True, "train.gc_every": 0, "train.steps": 2, "train.seq_len": 32,
                 "train.global_batch_size": 2, "train.micro_batch_size": 1, "train.eval_every": 0,
                 "data.max_bytes": 100000, "output.dir": str(tmp_path / "run"), "output.progress": False}
    torchrun(2, "_graphs_worker.py", "--overrides", json.dumps(overrides), "--out", str(out))
    r = torch.load(out)
    assert r["steps"] == 2 and r["made"] > 0  # the blocks ran as (stand-in) graphs
    assert r["alive"] == 0


def test_refuses_what_graphs_cannot_replay():
    cfg = load_config(None, {"model.preset": "tiny-qwen2", "train.cudagraphs": True})
    config = hf_config(cfg.model)
    assert errors(config, Layout(1, 1, 1, 2)) == []
    assert "one data-parallel rank" in errors(config, Layout(1, 2, 1, 1))[0]
    config.attention_dropout = 0.1
    assert "dropout (attention_dropout=0.1)" in errors(config, Layout(1, 1, 1, 2))[0]
    for preset in ("tiny-qwen2-moe", "tiny-mixtral"):  # num_experts, and Mixtral's num_local_experts
        moe = hf_config(load_config(None, {"model.preset": preset}).model)
        assert "mixture-of-experts" in errors(moe, Layout(1, 1, 1, 2))[0]
    with pytest.raises(ConfigError, match="needs CUDA GPUs; set train.cudagraphs=false"):
        check_cudagraphs(cfg, hf_config(cfg.model), Layout(1, 1, 1, 2), "cpu")
    with pytest.raises(ConfigError, match="set train.compile=auto or false"):
        load_config(None, {"train.cudagraphs": True, "train.compile": "true"})
    assert not load_config(None, {"train.cudagraphs": True}).train.compiles("cuda")  # auto: eager blocks, replayed


def test_plan_checks_graphs_and_counts_their_memory(capsys):
    """``shardwise plan`` names what graphs cannot replay, and counts what they hold: the blocks' gradients in the
    master dtype, four hidden-state buffers per block and one block's backward working set, no cached compute copies
    of the blocks."""
    from shardwise.cli import main

    common = ["plan", "--model.preset=qwen2-1.5b", "--world-size=2", "--train.seq_len=4096", "--train.compile=false",
              "--train.global_batch_size=8", "--train.micro_batch_size=1", "--train.activation_checkpointing=full",
              "--device-memory-gib=80", "--json"]  # planned as on GPUs: bf16 compute on fp32 master weights
    assert main([*common, "--parallel.tp=1", "--train.cudagraphs=true"]) == 1
    assert "train.cudagraphs=true needs one data-parallel rank" in capsys.readouterr().out
    memory = {}
    for graphed in (False, True):
        assert main([*common, "--parallel.tp=2", f"--train.cudagraphs={str(graphed).lower()}"]) == 0
        memory[graphed] = json.loads(capsys.readouterr().out)["memory_bytes"]
    blocks = 1_543_714_304 - 151_936 * 1536 - 1536  # every block's parameters: not the (tied) embedding, final norm
    norms = 28 * 2 * 1536  # replicated over TP ranks; the rest is split in two
    assert memory[True]["graph_grads"] == 4 * ((blocks - norms) / 2 + norms)
    assert memory[True]["graph_buffers"] == 4 * 28 * 4096 * 1536 * 2 / 2
    assert memory[True]["graph_workspace"] == 2 * memory[True]["recompute"] > 0  # a block's backward, in the pool
    assert memory[True]["compute_copies"] < memory[False]["compute_copies"] / 4

