"""The shared setup of the parity tests: model variants and the run config they train with."""

from __future__ import annotations

from shardwise.config import Config, load_config
from shardwise.model import PRESETS

BASE_PRESETS = ("tiny-qwen2", "tiny-llama", "tiny-qwen3", "tiny-mistral")
# Every architecture both tied and untied: "<preset>" as shipped, "<preset>-flip" with the tie flipped.
VARIANTS = [v for p in BASE_PRESETS for v in (p, f"{p}-flip")]

# seq_len 31 is odd so that sequence parallelism must pad; 8 sequences in micro-batches of 2
# gives 4 micro-batches per rank at dp=1 and 2 at dp=2.
RUN = {
    "train.seq_len": 31, "train.global_batch_size": 8, "train.micro_batch_size": 2,
    "train.steps": 3, "train.lr": 1e-2, "train.warmup_steps": 1, "train.seed": 7,
    "train.dtype": "float32", "data.max_bytes": 200_000, "output.progress": False,
}


def register_variants() -> None:
    """Add the tie-flipped presets, with fewer layers to keep the suite fast."""
    for preset in BASE_PRESETS:
        spec = dict(PRESETS[preset], num_hidden_layers=2)
        PRESETS[preset] = spec
        PRESETS[f"{preset}-flip"] = dict(spec, tie_word_embeddings=not spec["tie_word_embeddings"])


def case_config(variant: str, layout: dict[str, object]) -> Config:
    return load_config(None, {**RUN, "model.preset": variant, **{k: str(v) for k, v in layout.items()}})
