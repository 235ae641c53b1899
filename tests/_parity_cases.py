"""The shared setup of the parity tests: model variants (as model presets) and the run they train."""

from __future__ import annotations

from typing import Any

from shardwise.config import ModelConfig
from shardwise.model import hf_config
from shardwise.verify import preset_spec, resize

BASE_PRESETS = ("tiny-qwen2", "tiny-llama", "tiny-qwen3", "tiny-mistral")
# Every architecture both tied and untied: "<preset>-2l" as shipped but with 2 layers, "<preset>-2l-flip"
# with the tie flipped. New names, so the shipped presets stay as they are for every other test.
VARIANTS = [v for p in BASE_PRESETS for v in (f"{p}-2l", f"{p}-2l-flip")]

# seq_len 31 is odd so that sequence parallelism must pad; 8 sequences in micro-batches of 2
# gives 4 micro-batches per rank at dp=1 and 2 at dp=2.
RUN = {
    "train.seq_len": 31, "train.global_batch_size": 8, "train.micro_batch_size": 2,
    "train.steps": 3, "train.lr": 1e-2, "train.warmup_steps": 1, "train.seed": 7,
    "train.dtype": "float32", "data.max_bytes": 200_000, "output.progress": False,
}


def variant_presets() -> dict[str, dict[str, Any]]:
    """Each variant as a ``model.preset`` spec (for ``verify.register_presets``), with 2 layers to keep it fast."""
    presets = {}
    for preset in BASE_PRESETS:
        config = hf_config(ModelConfig(preset=preset))
        for variant, tied in ((f"{preset}-2l", config.tie_word_embeddings),
                              (f"{preset}-2l-flip", not config.tie_word_embeddings)):
            presets[variant] = preset_spec(resize(config, num_hidden_layers=2, tie_word_embeddings=tied))
    return presets


def case_overrides(variant: str, layout: dict[str, object]) -> dict[str, object]:
    """The config overrides of one case: the shared run, the variant, the layout."""
    return {**RUN, "model.preset": variant, **layout}
