"""Loading a Hugging Face model folder equals ``from_pretrained``, with each rank reading only its slices.

The checkpoints are written here by ``save_pretrained`` (indexed shards and single files, fp32 and
bf16, tied and untied, a tied one that also stores ``lm_head.weight``, Phi-3's fused projections,
Gemma 3's scaled embedding, Qwen2-MoE's and Qwen3-MoE's experts stored one matrix per expert, Mixtral's
under its original names), loaded by shardwise on 1, 2 (tp=2 with sequence and loss parallel) and 4
(dp_shard=2 x tp=2, and tp=4 with KV heads replicated) CPU processes, and compared with
``AutoModelForCausalLM.from_pretrained`` on one process: same logits on a fixed batch.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
import torch
from _load_worker import fixed_batch
from conftest import torchrun
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from shardwise.cli import main
from shardwise.config import ConfigError, ModelConfig, load_config
from shardwise.data import build_tokenizer, byte_tokenizer
from shardwise.load import load_weights
from shardwise.model import build_meta_model, hf_config

CHECKPOINTS = {
    # name: (preset, dtype stored, how it is written)
    "qwen2-tied-shards": ("tiny-qwen2", torch.float32, "shards"),
    "llama-untied-shards": ("tiny-llama", torch.float32, "shards"),
    "llama-untied-bf16-single": ("tiny-llama", torch.bfloat16, "single"),
    "qwen3-tied-single-with-lm-head": ("tiny-qwen3", torch.float32, "with-lm-head"),
    "phi3-fused-untied-single": ("tiny-phi3", torch.float32, "single"),
    "gemma3-scaled-embedding-shards": ("tiny-gemma3", torch.float32, "shards"),
    "qwen2-moe-per-expert-shards": ("tiny-qwen2-moe", torch.float32, "shards"),
    "qwen3-moe-per-expert-single": ("tiny-qwen3-moe", torch.float32, "single"),
    "mixtral-renamed-per-expert-single": ("tiny-mixtral", torch.float32, "single"),
}
LAYOUTS = {
    "1proc": ({"parallel.tp": 1, "parallel.dp_shard": 1}, 1),
    "tp2-sp-lp": ({"parallel.tp": 2, "parallel.dp_shard": 1}, 2),
    "dp2xtp2-sp-lp": ({"parallel.tp": 2, "parallel.dp_shard": 2}, 4),
    "tp4-sp-lp": ({"parallel.tp": 4, "parallel.dp_shard": 1}, 4),  # each of the 2 KV heads on 2 ranks
}


def write_checkpoint(folder: Path, preset: str, dtype: torch.dtype, how: str, seed: int) -> None:
    """A random HF model saved as HF saves it; norms and biases perturbed so that none is trivial."""
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(hf_config(ModelConfig(preset=preset)), dtype=torch.float32)
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    hf = hf.to(dtype)
    if how == "with-lm-head":  # some exports store tied models with a copy of lm_head.weight
        hf.config.save_pretrained(folder)
        tensors = {k: v.clone().contiguous() for k, v in hf.state_dict().items()}
        assert "lm_head.weight" in tensors
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    else:
        hf.save_pretrained(folder, max_shard_size="200KB" if how == "shards" else "1GB")
    indexed = (folder / "model.safetensors.index.json").is_file()
    assert indexed == (how == "shards"), f"{folder.name}: expected {'indexed shards' if indexed else 'one file'}"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    for seed, (name, spec) in enumerate(CHECKPOINTS.items()):
        write_checkpoint(root / name, *spec, seed=seed)
    return {name: root / name for name in CHECKPOINTS}


@cache
def reference(folder: Path) -> tuple[torch.Tensor, int]:
    """Logits and parameter count of plain ``from_pretrained`` (fp32) on one process."""
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        return hf(input_ids=fixed_batch()).logits, sum(p.numel() for p in hf.parameters())


@pytest.fixture(scope="module", params=list(LAYOUTS))
def loaded(request, checkpoints, tmp_path_factory) -> tuple[str, dict]:
    layout, nproc = LAYOUTS[request.param]
    out = tmp_path_factory.mktemp(request.param) / "results.pt"
    torchrun(nproc, "_load_worker.py", "--checkpoints", json.dumps([str(p) for p in checkpoints.values()]),
             "--layout", json.dumps(layout), "--out", str(out))
    return request.param, {Path(k).name: v for k, v in torch.load(out).items()}


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_logits_match_from_pretrained(loaded, checkpoints, name):
    layout, results = loaded
    got = results[name]
    ref_logits, ref_params = reference(checkpoints[name])
    assert got["num_params"] == ref_params, f"{layout}/{name}: tied embeddings came untied?"
    diff = (got["logits"] - ref_logits).abs().max().item()
    assert diff < 1e-5, f"{layout}/{name}: logits differ from from_pretrained by {diff}"


@pytest.mark.parametrize("name", ["qwen2-tied-shards", "llama-untied-shards"])
def test_each_rank_reads_only_its_slice(loaded, name):
    """Elements counted at the file: 1/world of every matrix, plus the small TP-replicated norms."""
    layout, results = loaded
    got = results[name]
    world = LAYOUTS[layout][1]
    for counted, returned in got["read"]:
        assert counted == returned, "the loader's count disagrees with what it got from the files"
        assert got["num_params"] / world <= counted <= 1.01 * got["num_params"] / world, (
            f"{layout}: a rank read {counted} of {got['num_params']} elements")


def test_experts_are_stored_one_matrix_per_expert(checkpoints):
    """The premise of the MoE case above: save_pretrained (like released checkpoints) stores each expert's matrices,
    not the fused tensors transformers holds, so loading must assemble this rank's block from them."""
    stored = json.loads((checkpoints["qwen2-moe-per-expert-shards"] / "model.safetensors.index.json").read_text())
    names = stored["weight_map"]
    assert "model.layers.0.mlp.experts.7.up_proj.weight" in names
    assert not any(n.endswith(("experts.gate_up_proj", "experts.down_proj")) for n in names)


def test_mixtral_is_stored_under_its_original_names(checkpoints):
    """The premise of the Mixtral case above: its block is stored as ``block_sparse_moe``, the router as ``gate``
    and each expert's gate, down and up matrices as ``w1``, ``w2``, ``w3``; the loader maps them onto transformers'
    ``mlp.gate`` and fused ``mlp.experts`` (``plans.mixtral.STORED_AS``)."""
    with safe_open(checkpoints["mixtral-renamed-per-expert-single"] / "model.safetensors", framework="pt") as f:
        names = set(f.keys())
    assert {"model.layers.0.block_sparse_moe.gate.weight", "model.layers.3.block_sparse_moe.experts.3.w3.weight",
            "model.layers.0.block_sparse_moe.experts.0.w2.weight"} <= names
    assert not any(".mlp." in n for n in names)


def _single_file_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path / "ckpt"
    write_checkpoint(folder, "tiny-qwen2", torch.float32, "single", seed=0)
    return folder, load_file(folder / "model.safetensors")


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop("model.norm.weight"), "model.safetensors has no tensor 'model.norm.weight'"),
    (lambda t: t.update(extra=torch.zeros(2)), "model.safetensors holds unexpected tensor 'extra'"),
    (lambda t: t.update({"model.norm.weight": torch.ones(3)}),
     "model.safetensors holds 'model.norm.weight' with shape [3], but config.json implies [128]"),
])
def test_mismatched_tensors_are_one_line_errors(tmp_path, edit, message):
    folder, tensors = _single_file_checkpoint(tmp_path)
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")
    model = build_meta_model(hf_config(ModelConfig(path=str(folder))))
    with pytest.raises(ConfigError, match="^" + re.escape(f"model.path={folder}: {message}")) as err:
        load_weights(model, folder, torch.device("cpu"))
    assert "\n" not in str(err.value)


def test_folder_without_weights(tmp_path, capsys):
    folder, _ = _single_file_checkpoint(tmp_path)
    (folder / "model.safetensors").unlink()
    capsys.readouterr()  # drop save_pretrained's progress bar
    message = f"model.path={folder}: no model.safetensors or model.safetensors.index.json there"
    assert main(["train", f"--model.path={folder}"]) == 2  # the launcher's preflight, before any process
    assert capsys.readouterr().err.strip().splitlines() == [
        f"shardwise: error: {message}; point it at a Hugging Face model folder with safetensors weights"]
    model = build_meta_model(hf_config(ModelConfig(path=str(folder))))
    with pytest.raises(ConfigError, match=re.escape(message)):  # and in-process
        load_weights(model, folder, torch.device("cpu"))


def test_index_naming_a_missing_shard(checkpoints, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    for f in checkpoints["llama-untied-shards"].iterdir():
        if not f.name.startswith("model-00002-"):
            (folder / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ConfigError, match=r"model.safetensors.index.json lists model-00002-of-000\d\d.safetensors, "
                                          "which is not there"):
        load_weights(build_meta_model(hf_config(ModelConfig(path=str(folder)))), folder, torch.device("cpu"))


def test_model_dtype_sets_master_weights(tmp_path):
    """``model.dtype=bfloat16`` keeps bf16 master weights, cast from the fp32 file; ties survive."""
    folder, tensors = _single_file_checkpoint(tmp_path)
    model = build_meta_model(hf_config(ModelConfig(path=str(folder))), torch.bfloat16)
    assert load_weights(model, folder, torch.device("cpu")) == sum(t.numel() for t in tensors.values())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.hf.lm_head.weight is model.hf.model.embed_tokens.weight
    assert torch.equal(model.hf.model.norm.weight, tensors["model.norm.weight"].bfloat16())


def test_tokenizer_larger_than_the_vocab(tmp_path):
    hf_config(ModelConfig(preset="tiny-qwen2")).save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)  # 257 tokens
    assert len(build_tokenizer(load_config(None, {"model.path": str(tmp_path)}))) == 257
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 256}))
    message = f"model.path={tmp_path}: the tokenizer has 257 tokens but the model's vocab_size is 256; set data"
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        build_tokenizer(load_config(None, {"model.path": str(tmp_path)}))
