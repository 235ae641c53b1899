"""Hugging Face causal LMs behind one forward that owns positions, masks and per-block wrapping.

``CausalLM`` calls the HF modules itself (embed -> rotary(position_ids) -> blocks -> norm ->
lm_head) instead of ``AutoModelForCausalLM.forward``: with sequence parallelism the embedding
output holds only a slice of the sequence, so HF's own forward would build positions and masks
from the wrong length. Here the rotary embedding always sees explicit full-sequence positions.
What an architecture's top-level forward does differently (scaled embeddings, per-layer windows
and rotary tables, capped logits) comes from its ``DecoderForward`` (``shardwise.plans``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
from torch.nn.attention.flex_attention import BlockMask
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from shardwise.config import Config, ConfigError, ModelConfig
from shardwise.cp import ordered_token, sequence_order
from shardwise.flex import block_mask
from shardwise.graphs import BlockGraphs
from shardwise.plans import model_forward
from shardwise.plans.decoder import num_experts
from shardwise.tp import Group, local_tensor, per_sequence_refusal

_TINY = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=320, max_position_embeddings=2048, rms_norm_eps=1e-6)

PRESETS: dict[str, dict] = {
    "tiny-qwen2": dict(model_type="qwen2", tie_word_embeddings=True, **_TINY),
    "tiny-llama": dict(model_type="llama", tie_word_embeddings=False, **_TINY),
    "tiny-qwen3": dict(model_type="qwen3", tie_word_embeddings=True, head_dim=32, **_TINY),
    "tiny-mistral": dict(model_type="mistral", tie_word_embeddings=False, sliding_window=None, **_TINY),
    # Gemma 2 soft-caps attention logits, which needs model.attn_implementation=eager.
    "tiny-gemma2": dict(model_type="gemma2", tie_word_embeddings=True, head_dim=32, query_pre_attn_scalar=32,
                        sliding_window=64, attn_logit_softcapping=50.0, final_logit_softcapping=30.0, **_TINY),
    "tiny-gemma3": dict(model_type="gemma3_text", tie_word_embeddings=True, head_dim=32, query_pre_attn_scalar=32,
                        sliding_window=64, layer_types=["sliding_attention", "full_attention"] * 2, **_TINY),
    "tiny-phi3": dict(model_type="phi3", tie_word_embeddings=False, pad_token_id=None, eos_token_id=None, **_TINY),
    "tiny-olmo2": dict(model_type="olmo2", tie_word_embeddings=False, eos_token_id=None, **_TINY),
    "tiny-granite": dict(model_type="granite", tie_word_embeddings=True, embedding_multiplier=12.0,
                         residual_multiplier=0.22, attention_multiplier=1 / 32, logits_scaling=8.0, **_TINY),
    # Layer 1 is dense (mlp_only_layers), the others mixtures of 8 experts, 2 per token, plus a shared expert.
    "tiny-qwen2-moe": dict(model_type="qwen2_moe", tie_word_embeddings=False, num_experts=8, num_experts_per_tok=2,
                           moe_intermediate_size=64, shared_expert_intermediate_size=176, mlp_only_layers=[1],
                           **_TINY),
    # Every layer a mixture of 8 experts, 2 per token, their weights renormalized; Qwen3's per-head q/k norms.
    "tiny-qwen3-moe": dict(model_type="qwen3_moe", tie_word_embeddings=False, head_dim=32, num_experts=8,
                           num_experts_per_tok=2, moe_intermediate_size=64, norm_topk_prob=True, **_TINY),
    # OLMo 2's q/k norms over the whole projection, Llama's norms, every layer a mixture of 8 experts, 2 per token.
    "tiny-olmoe": dict(model_type="olmoe", tie_word_embeddings=False, num_experts=8, num_experts_per_tok=2,
                       eos_token_id=None, **{**_TINY, "intermediate_size": 64}),
    # Every layer a mixture of 4 experts of intermediate_size, 2 per token.
    "tiny-mixtral": dict(model_type="mixtral", tie_word_embeddings=False, num_local_experts=4, num_experts_per_tok=2,
                         sliding_window=None, **_TINY),
    "qwen2-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                       max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1e6),
    "qwen2-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                       max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1e6),
    "qwen2-7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                     max_position_embeddings=32768, tie_word_embeddings=False, rope_theta=1e6),
    "llama3-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                      max_position_embeddings=8192, tie_word_embeddings=False, rope_theta=5e5),
    # Llama 3.1 8B: Llama 3 8B's shapes, 128k positions through llama3 rope scaling (long sequences, parallel.cp)
    "llama3.1-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                        max_position_embeddings=131072, tie_word_embeddings=False,
                        rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
}
SHIPPED_PRESETS = tuple(PRESETS)  # the presets above; verify and the tests register toy variants beside them


def hf_config(cfg: ModelConfig) -> PretrainedConfig:
    """The HF config of a local model folder (``model.path``) or of a named preset."""
    if cfg.path:
        folder = Path(cfg.path)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model.path={cfg.path}: no config.json there; point it at a Hugging Face model folder")
        config = AutoConfig.from_pretrained(folder, trust_remote_code=cfg.trust_remote_code)
    else:
        if cfg.preset not in PRESETS:
            raise ConfigError(f"model.preset={cfg.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
        spec = dict(PRESETS[cfg.preset])
        config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    config._attn_implementation = cfg.attn_implementation
    config.use_cache = False
    return config


class CausalLM(nn.Module):
    """Wraps an HF ``*ForCausalLM``; returns logits, never a loss (see ``shardwise.loss``)."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf
        self.adapter = model_forward(hf.config)
        self.checkpoint_fn: Callable[..., torch.Tensor] | None = None
        self.context: Group | None = None  # the context-parallel group (``shardwise.cp``); None: whole rows
        self.graphs: BlockGraphs | None = None  # the blocks as CUDA graphs (``shardwise.graphs``)
        self.block_masks = False  # masks as flex ``BlockMask``s (``shardwise.flex``), not dense tensors
        # the TP group where each rank attends over its own whole rows (``tp.SequenceAttention``); None: every row
        self.rows: Group | None = None

    @property
    def config(self) -> PretrainedConfig:
        return self.hf.config

    @property
    def layers(self) -> nn.ModuleList:
        return self.hf.model.layers

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, packed: bool | None = None,
                documents: torch.Tensor | None = None) -> torch.Tensor:
        """``attention_mask`` None means causal attention within each document (``document_mask``),
        and within each layer's sliding window; a given mask applies to every layer.

        ``packed`` says whether any row holds a document boundary, as ``Batch.to`` found on the
        CPU; None makes ``document_mask`` look at ``position_ids`` itself (one host sync on a GPU).
        Under context parallelism ``input_ids`` and ``position_ids`` are this rank's tokens
        (``data.split_sequence``), and ``documents`` numbers the documents of the whole rows. Where each TP
        rank attends over its own rows (``rows``), attention gets their positions, rotary tables and masks.
        """
        base, adapter = self.hf.model, self.adapter
        hidden = adapter.embed(base, input_ids)
        if self.rows is not None:
            position_ids = own_rows(position_ids, self.rows)
            attention_mask = None if attention_mask is None else own_rows(attention_mask, self.rows)
        windows = adapter.windows()
        if attention_mask is None:
            by_window = {w: self._mask(position_ids, hidden.dtype, packed, documents, w) for w in set(windows)}
            masks = [by_window[w] for w in windows]
        else:
            masks = [attention_mask] * len(windows)
        position_embeddings = adapter.position_embeddings(base, hidden, position_ids)
        calls = [(layer, dict(attention_mask=mask, position_ids=position_ids, position_embeddings=rotary))
                 for layer, mask, rotary in zip(self.layers, masks, position_embeddings, strict=True)]
        if self.graphs is not None and torch.is_grad_enabled():
            hidden = self.graphs(hidden, calls, self._block)
        else:
            for layer, kwargs in calls:
                hidden = self._block(layer, hidden, kwargs)
        logits = adapter.logits(self.hf.lm_head(base.norm(hidden)))
        # Sequence parallelism hands the head the tokens of every row as one flat sequence.
        return logits if logits.shape[:2] == input_ids.shape else logits.view(*input_ids.shape, -1)

    def _block(self, layer: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        return self.checkpoint_fn(layer, hidden, **kwargs) if self.checkpoint_fn else layer(hidden, **kwargs)

    def _mask(self, position_ids: torch.Tensor, dtype: torch.dtype, packed: bool | None,
              documents: torch.Tensor | None, window: int | None) -> torch.Tensor | BlockMask | None:
        impl = self.config._attn_implementation
        if self.context is None:
            return document_mask(position_ids, impl, dtype, packed, window, self.block_masks)
        if documents is None:
            raise ValueError("context parallelism needs the document ids of whole rows (Batch.documents)")
        return context_mask(documents, self.context, impl, dtype, packed, window, self.block_masks)


def own_rows(x: torch.Tensor, g: Group) -> torch.Tensor:
    """The rows of ``x`` (``(batch, ...)``) whose tokens TP rank ``g.rank`` holds under sequence parallelism, which
    cuts the micro-batch's tokens row after row into ``g.size`` contiguous pieces: whole rows where ``batch`` is a
    multiple of ``g.size``."""
    batch = x.shape[0]
    if batch % g.size:
        raise ConfigError(f"{per_sequence_refusal(g.size, batch)}; set train.micro_batch_size to a multiple of "
                          f"{g.size}, or parallel.tp_attention=heads")
    rows = batch // g.size
    return x[g.rank * rows:(g.rank + 1) * rows]


def document_block_mask(documents: torch.Tensor, window: int | None, cp: int = 1, rank: int = 0) -> BlockMask:
    """The flex ``BlockMask`` (``shardwise.flex``) of ``visible`` over rows of ``documents`` (``(batch, seq)``
    document ids, ``document_ids``): every query by every key, or under context parallelism (``cp`` ranks) rank
    ``rank``'s queries by the gathered keys, both in ``cp.sequence_order`` (``cp.ordered_token``). Built
    compiled on GPUs (once per step, for every layer; ``flex.block_mask``)."""
    batch, seq = documents.shape

    def allowed(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        if cp > 1:
            q, kv = ordered_token(q + rank * (seq // cp), seq, cp), ordered_token(kv, seq, cp)
        return visible(documents[b, q] == documents[b, kv], q - kv, window)

    return block_mask(allowed, batch, seq // cp, seq, documents.device)


def has_restarts(position_ids: torch.Tensor) -> bool:
    """Whether some row's positions restart at 0 after its first token: a packed document boundary."""
    return bool((position_ids[:, 1:] == 0).any())


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Each token's document, numbered along the row: a document starts where its position is 0 (packed samples
    restart positions there), so a running count of zeros numbers them."""
    return (position_ids == 0).cumsum(dim=1)


def needs_mask(attn_implementation: str, packed: bool, window: int | None, seq: int) -> bool:
    """Whether attention over rows of ``seq`` tokens needs an explicit mask: rows with a document boundary
    (``packed``), a sliding window shorter than the rows, or eager attention, which applies only the mask it
    gets. Otherwise causal attention needs none: sdpa's plain causal path, or under CP
    ``cp.chunk_pair_attention``."""
    return packed or (window is not None and window < seq) or attn_implementation == "eager"


def ring_note(cfg: Config) -> str | None:
    """Why ``parallel.cp_exchange=ring`` will not carry some of the attention, or None. The ring takes only
    attention that needs no mask (``needs_mask``): packed rows with a document boundary, layers whose sliding
    window is shorter than the rows and eager attention all-gather K/V as before."""
    p = cfg.parallel
    if p.cp_exchange != "ring":
        return None
    if p.cp == 1:
        return "parallel.cp_exchange=ring has no effect with parallel.cp=1"
    impl, packed, seq = cfg.model.attn_implementation, cfg.data.packing, cfg.train.seq_len
    windows = model_forward(hf_config(cfg.model)).windows()
    if not any(needs_mask(impl, packed, w, seq) for w in windows):
        return None
    reasons = ["data.packing=true (rows with a document boundary)"] if packed else []
    if impl == "eager":
        reasons.append("model.attn_implementation=eager")
    short = sum(w is not None and w < seq for w in windows)
    if short:
        reasons.append(f"{short} layers' sliding windows, shorter than train.seq_len")
    fix = "; set data.packing=false for one document per row" if packed else ""
    return f"parallel.cp_exchange=ring passes K/V round the ring only where attention needs no mask; " \
           f"{' and '.join(reasons)} keep that attention on the all-gather{fix}"


def document_mask(position_ids: torch.Tensor, attn_implementation: str, dtype: torch.dtype,
                  packed: bool | None = None, window: int | None = None,
                  block_mask: bool = False) -> torch.Tensor | BlockMask | None:
    """The (batch, 1, seq, seq) mask of causal attention within packed documents, or None.

    A query sees a key iff both are in the same document (``document_ids``) and the key is not
    later, nor (with a sliding ``window``) ``window`` or more tokens earlier. The mask covers the
    full sequence, as attention sees it under sequence parallelism.
    Without a restart after the first token in any row and without a window shorter than the
    sequence, None keeps sdpa's plain causal path (and its fastest kernels); eager attention has
    none (it applies only the mask it gets), so it always gets one. ``packed`` is that restart test
    done by the caller; None does it here. With ``block_mask`` the same rule as flex's ``BlockMask``
    (``shardwise.flex``).
    """
    if packed is None:
        # meta tensors (``shardwise plan``) trace shapes and collectives, which no mask changes
        packed = not position_ids.is_meta and has_restarts(position_ids)
    seq = position_ids.shape[1]
    if not needs_mask(attn_implementation, packed, window, seq):
        return None
    doc = document_ids(position_ids)
    if block_mask:
        return document_block_mask(doc, window)
    index = torch.arange(seq, device=doc.device)
    return document_causal_mask(doc, doc, index, index, attn_implementation, dtype, window)


def context_mask(documents: torch.Tensor, g: Group, attn_implementation: str, dtype: torch.dtype,
                 packed: bool | None = None, window: int | None = None,
                 block_mask: bool = False) -> torch.Tensor | BlockMask | None:
    """The (batch, 1, local_seq, seq) mask of this context-parallel rank's queries over the keys of every rank,
    whose columns are in the order the K/V all-gather delivers them (``cp.sequence_order``), or None.

    The same rule as ``document_mask``, on global token indices and the document ids of whole rows
    (``documents``), and as there None for sdpa when no row holds a document boundary (``packed``; None:
    looked up in ``documents``) and no window is shorter than the rows: ``cp.chunk_pair_attention``
    then attends causally with flash kernels and no mask. With ``block_mask`` the same rule as flex's
    ``BlockMask`` (``shardwise.flex``).
    """
    seq = documents.shape[1]
    if packed is None:  # meta tensors (``shardwise plan``) trace shapes and collectives, which no mask changes
        packed = not documents.is_meta and bool((documents[:, -1] != documents[:, 0]).any())
    if not needs_mask(attn_implementation, packed, window, seq):  # CP attention is sdpa or eager (cp.errors)
        return None
    if block_mask:
        return document_block_mask(documents, window, g.size, g.rank)
    order = sequence_order(seq, g.size).to(documents.device)
    local = order.view(g.size, -1)[g.rank]
    return document_causal_mask(documents[:, local], documents[:, order], local, order, attn_implementation, dtype,
                                window)


def visible(same_document: torch.Tensor, behind: torch.Tensor, window: int | None) -> torch.Tensor:
    """The packed-document rule: a query sees a key of its own document that is not later (``behind``: query
    index minus key index) and, with a sliding ``window``, less than ``window`` tokens earlier (as HF's
    ``sliding_window_overlay``). One rule for the dense masks and flex's ``BlockMask``s."""
    near = (behind >= 0) if window is None else (behind >= 0) & (behind < window)
    return same_document & near


def document_causal_mask(query_docs: torch.Tensor, key_docs: torch.Tensor, query_index: torch.Tensor,
                         key_index: torch.Tensor, attn_implementation: str, dtype: torch.dtype,
                         window: int | None) -> torch.Tensor:
    """(batch, 1, queries, keys) of ``visible``: boolean for sdpa, additive for eager."""
    behind = query_index[:, None] - key_index[None, :]
    allowed = visible(query_docs[:, :, None] == key_docs[:, None, :], behind, window)[:, None]
    if attn_implementation == "sdpa":
        return allowed
    if attn_implementation == "eager":  # eager attention adds the mask to its scores
        blocked = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return blocked.masked_fill_(~allowed, torch.finfo(dtype).min)
    raise ConfigError(f"model.attn_implementation={attn_implementation!r} cannot mask packed documents; "
                      "use sdpa or eager, or set data.packing=false")


def build_meta_model(config: PretrainedConfig, dtype: torch.dtype = torch.float32,
                     trust_remote_code: bool = False) -> CausalLM:
    """The model's structure without storage; ``init_weights`` or ``load_weights`` fills it after sharding.

    ``dtype`` (``model.dtype``) is the dtype of the trainable master weights; FSDP's mixed
    precision casts them to the compute dtype (``train.dtype``) for each forward.
    """
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    return CausalLM(hf)


def num_params(model: nn.Module) -> int:
    """Unique parameters, global (DTensor numel is the global numel); tied weights count once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def flop_params(model: CausalLM) -> int:
    """N in the MFU formula: the matmul weights a token runs through, lm_head once, no embedding lookup; of a
    mixture of experts' routed experts only the ``num_experts_per_tok`` each token is sent to (as TorchTitan
    counts them), or a 64-expert model would claim 64/k times the work it does.

    The registered parameter (a DTensor's numel is global), not ``weight``: under tensor parallelism without
    FSDP that attribute reads this rank's local shard (``shardwise.tp``)."""
    n = num_params(model)
    if not model.config.tie_word_embeddings:
        n -= model.hf.model.embed_tokens._parameters["weight"].numel()
    experts = num_experts(model.config)
    if experts:
        routed = sum(p.numel() for name, p in model.named_parameters() if ".mlp.experts." in name)
        n -= routed // experts * (experts - model.config.num_experts_per_tok)
    return n


def tie_embeddings(model: CausalLM) -> None:
    """Make a tied model's ``lm_head`` hold the embedding's parameter object again.

    The registered parameter, not ``module.weight``: under tensor parallelism the latter reads this
    rank's local shard (``shardwise.tp``).
    """
    if model.config.tie_word_embeddings:
        model.hf.lm_head.register_parameter("weight", model.hf.model.embed_tokens._parameters["weight"])


def materialize(model: CausalLM, device: torch.device) -> None:
    """Give a meta model's parameters (uninitialized) memory on ``device``, tied ones still tied: ``to_empty``
    gives tied plain parameters separate storage (DTensors of FSDP or TP stay tied), which would leave a one-process
    run training a head of its own beside the embedding."""
    model.to_empty(device=device)
    tie_embeddings(model)


def local_slices(param: torch.Tensor) -> tuple[slice, ...]:
    """Which part of the full tensor this rank holds (works for plain tensors and any DTensor)."""
    if not isinstance(param, DTensor):
        return tuple(slice(0, n) for n in param.shape)
    shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    return tuple(slice(o, o + n) for o, n in zip(offset, shape))


def _full_init(name: str, shape: torch.Size, std: float, seed: int, device: torch.device) -> torch.Tensor:
    """HF-style init of one full tensor, seeded by (seed, name) so every layout draws the same values."""
    if name.endswith("bias"):
        return torch.zeros(shape, device=device)
    if len(shape) == 1:
        return torch.ones(shape, device=device)
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    return torch.empty(shape, device=device).normal_(0.0, std, generator=gen)


@torch.no_grad()
def init_weights(model: CausalLM, device: torch.device, seed: int) -> None:
    """Materialize a meta (possibly sharded) model and fill each rank's slice of every parameter.

    Each full tensor is drawn from a generator seeded by the parameter's name and the run seed,
    then only the local slice is kept, so weights depend on ``train.seed`` alone, never on the
    layout, and no rank holds more than one full tensor at a time.
    """
    materialize(model, device)
    std = model.config.initializer_range
    for name, param in model.named_parameters():
        full = _full_init(name, param.shape, std, seed, device)
        local_tensor(param).copy_(full[local_slices(param)])
    reset_buffers(model, device)


def reset_buffers(model: CausalLM, device: torch.device) -> None:
    """Recompute non-persistent buffers (rotary ``inv_freq``, Gemma's embedding scale), lost on the meta device."""
    model.adapter.reset_buffers(model.hf.model, device)
