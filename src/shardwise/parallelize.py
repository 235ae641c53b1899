"""Apply tensor parallelism, context parallelism, flex attention for packed rows, activation checkpointing, compile
and FSDP2 (with more than one data- or context-parallel rank), in that order."""

from __future__ import annotations

import functools
import os
import warnings

import torch
import transformers
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)
from transformers import PretrainedConfig

from shardwise import cp, flex, fuse, graphs, sdpa
from shardwise.config import Config, ConfigError, ParallelConfig
from shardwise.data import micro_batch_size
from shardwise.mesh import Layout, Meshes
from shardwise.model import CausalLM, tie_embeddings
from shardwise.plans import get_plan, model_forward
from shardwise.plans.decoder import attend_through, has_dense_mlp, head_dim
from shardwise.tp import Group, Style, compute_in, per_sequence_refusal, replicate_remaining

# Ops whose outputs selective checkpointing keeps: recomputing them costs FLOPs or communication.
_SAVE_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops._c10d_functional.reduce_scatter_tensor.default,
}


def divisibility_errors(config: PretrainedConfig, cfg: Config, tp: int, dp: int = 1) -> list[str]:
    """Every shape that tensor parallelism cannot split evenly, the architecture's own refusals, what context
    parallelism cannot use (an attention implementation, a length that does not cut into equal chunks), and a
    too long sequence; one line each.

    KV heads either split over ``tp`` or, where ``tp`` is a multiple of them, are each replicated on
    ``tp / num_key_value_heads`` ranks, which store equal shares of the head's rows. Attention computed per
    sequence (``parallel.tp_attention=sequences``) splits no heads; it needs the micro-batch of each of the
    ``dp`` data-parallel ranks to be a multiple of ``tp`` sequences instead (``tp.SequenceAttention``).
    """
    heads, kv, hd, vocab = config.num_attention_heads, config.num_key_value_heads, head_dim(config), config.vocab_size
    by_heads = cfg.parallel.attention() == "heads"
    split = {"vocab size": vocab} | ({"intermediate size": config.intermediate_size} if has_dense_mlp(config) else {})
    ok = [d for d in range(1, tp + 1) if all(n % d == 0 for n in split.values())
          and (not by_heads or heads % d == 0 and _kv_splits(kv, hd, d))]
    fix = f"use parallel.tp in {ok}"
    widths = [f"{what} ({n}) is not divisible by parallel.tp={tp}; {fix}" for what, n in split.items() if n % tp]
    # where heads are what stops this tp, attention per sequence may not be
    per_sequence = cfg.parallel.holds_whole_rows() and not widths and not sequence_errors(cfg, tp, dp)
    heads_fix = fix + (", or parallel.tp_attention=sequences (every head on each rank)" if per_sequence else "")
    errors = [f"attention heads ({heads}) is not divisible by parallel.tp={tp}; {heads_fix}"] if by_heads and heads % tp else []
    if not by_heads:
        errors += sequence_errors(cfg, tp, dp)
    elif kv % tp and tp % kv:
        errors.append(f"KV heads ({kv}) is neither divisible by nor a divisor of parallel.tp={tp}; {heads_fix}")
    elif not _kv_splits(kv, hd, tp):
        errors.append(f"head_dim ({hd}) is not divisible by parallel.tp / KV heads = {tp // kv}, the ranks "
                      f"sharing each KV head; {heads_fix}")
    errors += widths
    errors += model_forward(config).errors()
    errors += cp.errors(config, cfg.train.seq_len, cfg.parallel.cp, tp)
    limit = config.max_position_embeddings
    if cfg.train.seq_len > limit:
        errors.append(f"train.seq_len={cfg.train.seq_len} exceeds the model's max_position_embeddings={limit}")
    return errors


def sequence_errors(cfg: Config, tp: int, dp: int) -> list[str]:
    """Why each TP rank would not hold whole sequences of every micro-batch (``parallel.tp_attention=sequences``)."""
    t = cfg.train
    micro = micro_batch_size(t.global_batch_size, t.micro_batch_size, dp)
    if micro % tp == 0:
        return []
    share = t.global_batch_size // dp
    splits = [m for m in range(tp, share + 1, tp) if share % m == 0]
    if splits:
        fix = f"train.micro_batch_size={min(splits, key=lambda m: (abs(m - micro), m))}"
    else:
        fix = f"train.global_batch_size={dp * tp * max(1, round(share / tp))} and train.micro_batch_size={tp}"
    return [f"{per_sequence_refusal(tp, micro)}; set {fix}, or parallel.tp_attention=heads"]


def _kv_splits(kv: int, rows: int, tp: int) -> bool:
    """KV heads of ``rows`` rows split over ``tp`` ranks, or each on ``tp / kv`` ranks holding equal shares of it."""
    return kv % tp == 0 or (tp % kv == 0 and rows % (tp // kv) == 0)


def check_divisibility(config: PretrainedConfig, cfg: Config, tp: int, dp: int = 1) -> None:
    """Refuse shapes that tensor parallelism cannot split evenly, naming the key to change."""
    errors = divisibility_errors(config, cfg, tp, dp)
    if errors:
        raise ConfigError(errors[0])


def apply_styles(root: nn.Module, styles: dict[str, Style], tp_mesh: DeviceMesh) -> None:
    for path, style in styles.items():
        style.apply(root.get_submodule(path), tp_mesh)


def apply_tp(model: CausalLM, tp_mesh: DeviceMesh, p: ParallelConfig) -> None:
    """Shard each block and the top with the architecture's plan, then re-tie tied embeddings; where attention is
    computed per sequence (``parallel.tp_attention``), the model hands it this rank's rows.

    The embedding's and ``lm_head``'s styles each replace the (shared) weight by a DTensor of their
    own; both are ``Shard(0)`` over the vocab, so pointing ``lm_head`` back at the embedding's
    restores the tie with matching placements.
    """
    plan = get_plan(model.config, p.sequence_parallel, p.loss_parallel, p.attention())
    for layer in model.layers:
        apply_styles(layer, plan.block, tp_mesh)
    apply_styles(model, plan.top, tp_mesh)
    tie_embeddings(model)
    replicate_remaining(model, tp_mesh)
    if p.attention() == "sequences":
        model.rows = Group.of(tp_mesh)


def apply_cp(model: CausalLM, cp_mesh: DeviceMesh, exchange: str) -> None:
    """Split each sequence over the CP ranks: every attention module exchanges K/V over them (``exchange``:
    all-gather, or a ring where rows need no mask), and ``CausalLM`` builds masks of its local queries over all
    keys where rows need one (``shardwise.cp``)."""
    g = Group.of(cp_mesh)
    cp.attend_over_context([layer.self_attn for layer in model.layers], model.config, g, exchange)
    model.context = g


def _selective_policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def apply_activation_checkpointing(model: CausalLM, mode: str, keep_rng: bool = True) -> None:
    """``full`` recomputes whole blocks; ``selective`` keeps matmul, attention and collective outputs.

    The checkpoint wraps the call of each (possibly compiled) block in ``CausalLM.forward``, which
    keeps HF parameter names. Measured on 1xH100 (BENCHMARKS.md), wrapping each block's own
    ``forward`` inside the compiled region instead was slower: dynamo recompiled per block.
    ``keep_rng=False`` skips saving the RNG states for the recompute (CUDA graphs: blocks without dropout).
    """
    if mode == "none":
        model.checkpoint_fn = None
        return
    kwargs = {"use_reentrant": False, "preserve_rng_state": keep_rng}
    if mode == "selective":
        kwargs["context_fn"] = functools.partial(create_selective_checkpoint_contexts, _selective_policy)
    model.checkpoint_fn = functools.partial(checkpoint, **kwargs)


def apply_async_tp(tp_mesh: DeviceMesh) -> None:
    """Let inductor overlap TP collectives with matmuls: first any collective that an independent matmul can
    hide as it is (its reorder passes), then, for the rest, split reduce-scatters (and all-gathers) into chunks
    pipelined with the matmul that produces (consumes) them. On 2×H200 that ran 1.04× the plain compiled TP
    step, the split alone 1.03× (BENCHMARKS.md).

    In a block the split takes the forward's two reduce-scatters and both all-gathers, and the backward's
    all-gather into ``down_proj``'s input gradient. The pass follows an all-gather only into matmuls that read
    it as it is (``tp._enter`` hands it over so), and only into ``mm``: attention's stays unsplit where each
    rank's tokens are not whole sequences, or where q/k/v have biases (Qwen2: ``addmm``, which inductor keeps
    fused in bf16). The backward's other collectives have independent weight-gradient matmuls beside them, so
    the reorder passes place those (BENCHMARKS.md, sessions 26-27); splitting them as well measured 0.98x and
    1.01x of this at Qwen2-1.5B and Llama-3-8B shapes (session 32), so inductor's rule stays.

    Needs compiled blocks, CUDA and symmetric memory on the TP group. NVLink multicast stays off
    unless the environment says otherwise: it can take shared GPUs out of service.
    """
    if tp_mesh.device_type != "cuda":
        raise ConfigError("parallel.async_tp=true needs CUDA GPUs; set parallel.async_tp=false on CPU")
    from torch.distributed._symmetric_memory import enable_symm_mem_for_group

    os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    torch._inductor.config._micro_pipeline_tp = True
    torch._inductor.config.reorder_for_compute_comm_overlap = True
    torch._inductor.config.reorder_for_compute_comm_overlap_passes = [
        "reorder_compute_for_overlap", "sink_waits", "raise_comms"]
    # torch 2.11's micro-pipeline pass makes fx warn of erasing an erased node while it rewrites matmuls: noise.
    warnings.filterwarnings("ignore", message=r"erase_node\(\w+\) on an already erased node")
    with warnings.catch_warnings():  # torch 2.11 deprecates the call (a FutureWarning per rank); earlier ones need it
        warnings.simplefilter("ignore", FutureWarning)
        enable_symm_mem_for_group(tp_mesh.get_group().group_name)


def apply_flex(model: CausalLM) -> None:
    """Rows with a document boundary (or a sliding window shorter than the rows) attend through FlexAttention's
    block-sparse kernels instead of sdpa's dense mask (``shardwise.flex``)."""
    model.block_masks = True
    flex.attend_with_flex([layer.self_attn for layer in model.layers], model.context is not None)


def apply_compile(model: CausalLM) -> None:
    """Compile each block's ``forward`` as one graph (``fullgraph``: a graph break is an error, not a slow
    path), TP collectives included, its projections that share an input merged (``shardwise.fuse``). FSDP's and
    checkpointing's hooks stay outside, in eager, around it.

    Blocks share one compiled graph (same code, parameters are graph inputs), so the recompile
    limit is raised only to cover the few shape variants a run sees (e.g. evaluation batches).
    """
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 16)
    options = {"post_grad_custom_pre_pass": fuse.SiblingMatmuls()}
    for layer in model.layers:
        layer.forward = torch.compile(layer.forward, fullgraph=True, options=options)


def check_compile(model: CausalLM, dtype: torch.dtype) -> None:
    """Refuse to compile blocks whose MoE experts transformers cannot trace: outside bf16 its grouped-matmul experts
    fall back to a loop over experts, whose backward transformers 5.17 leaves open to tracing (a data-dependent
    guard error deep in dynamo) and later releases wrap in an op of their own (5.24 does)."""
    if dtype == torch.bfloat16 or getattr(model.config, "_experts_implementation", None) != "grouped_mm":
        return
    if not _traceable_experts_fallback():
        raise ConfigError(f"compiled {model.config.model_type} experts in {str(dtype).removeprefix('torch.')} cannot "
                          f"be traced with transformers {transformers.__version__} (its grouped-matmul fallback); set "
                          "train.dtype=bfloat16 or train.compile=false, or upgrade transformers (5.24 works)")


def _traceable_experts_fallback() -> bool:
    """Whether transformers wraps its grouped-matmul fallback's backward in an op (what makes it traceable)."""
    import transformers.integrations.moe  # noqa: F401  (registers transformers' ops)
    return hasattr(torch.ops.transformers, "grouped_mm_fallback_backward")


def check_cudagraphs(cfg: Config, config: PretrainedConfig, layout: Layout, device_type: str) -> None:
    """Refuse ``train.cudagraphs=true`` where the blocks cannot be replayed (``graphs.errors``) or there is no GPU."""
    if not cfg.train.cudagraphs:
        return
    errors = graphs.errors(config, layout)
    if errors:
        raise ConfigError(errors[0])
    if device_type != "cuda":
        raise ConfigError("train.cudagraphs=true needs CUDA GPUs; set train.cudagraphs=false on CPU")


def apply_fsdp(model: CausalLM, mesh: DeviceMesh, param_dtype: torch.dtype, reshard_after_forward: bool) -> None:
    """One FSDP unit per decoder block plus the root (embedding, final norm, lm_head), sharded over ``dp_shard x cp``
    (``shardwise.mesh``).

    ``reshard_after_forward=False`` keeps gathered blocks until backward (ZeRO-2 style): less
    all-gather traffic for more memory. The root returns logits that sequence parallelism has
    reshaped (a view); FSDP warns that an in-place op on it would skip its backward hook, which
    nothing here does (losses are out of place), so that warning is silenced.
    """
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(\w+\) returned a view tensor")
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for i, layer in enumerate(model.layers):
        # The last block's parameters are needed again at once by backward: keep them gathered.
        last = i == len(model.layers) - 1
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward and not last)
    fully_shard(model, mesh=mesh, mp_policy=mp)


def prepare_micro_batch(model: FSDPModule, last: bool, *, keep_gathered: bool, defer_grad_reduce: bool) -> None:
    """Before each micro-batch of a step: gradients are reduced after its backward (or only after the last one,
    with ``defer_grad_reduce``); with blocks kept gathered from forward to backward (``keep_gathered``:
    ``parallel.reshard_after_forward=false``) every unit also stays gathered from one micro-batch's backward to the
    next one's forward, until the step's last backward reshards them for the optimizer.

    That costs no memory: the step's peak, at the end of a forward, holds every unit gathered anyway, and no
    parameter changes before the optimizer step; it saves all but one all-gather of each unit per step (Llama-3-8B
    at dp_shard=2, 4 micro-batches: 1.05x on 2xH100, the same peak). With blocks freed after forward nothing is
    kept: keeping the root and the last block through the backward measured 0.2 GiB more there for 1.005x, and
    that setting is the one chosen where memory is tight (BENCHMARKS.md, session 15)."""
    model.set_requires_gradient_sync(last or not defer_grad_reduce)
    model.set_reshard_after_backward(last or not keep_gathered)


def apply_mixed_precision(model: CausalLM, dtype: torch.dtype) -> None:
    """Without FSDP: master weights stay in ``model.dtype`` and compute reads them cast to ``dtype``; the
    casts' backward returns gradients in the master dtype, where micro-batches accumulate."""
    for module in model.modules():
        compute_in(module, dtype)


def parallelize(model: CausalLM, cfg: Config, meshes: Meshes, layout: Layout, param_dtype: torch.dtype) -> None:
    """Turn a meta model into a parallel one, ready for ``init_weights`` or a checkpoint load."""
    check_divisibility(model.config, cfg, layout.tp, layout.dp)
    if layout.tp > 1:
        apply_tp(model, meshes.tp, cfg.parallel)
    if layout.cp > 1:
        apply_cp(model, meshes.cp, cfg.parallel.cp_exchange)
    if flex.uses_flex(cfg, model.config, meshes.tp.device_type):
        apply_flex(model)
    elif sdpa.needs_repeat(cfg.model.attn_implementation, param_dtype, meshes.tp.device_type, layout.cp > 1):
        for layer in model.layers:
            attend_through(layer.self_attn, sdpa.REPEATED_KV)
    apply_activation_checkpointing(model, cfg.train.activation_checkpointing, keep_rng=not cfg.train.cudagraphs)
    if cfg.train.cudagraphs:
        check_cudagraphs(cfg, model.config, layout, meshes.tp.device_type)
        model.graphs = graphs.BlockGraphs()
    if cfg.parallel.async_tp:
        apply_async_tp(meshes.tp)
    if cfg.train.compiles(meshes.tp.device_type):
        check_compile(model, param_dtype)
        apply_compile(model)
    if layout.dp_cp > 1:
        apply_fsdp(model, meshes.fsdp, param_dtype, cfg.parallel.reshards())
    else:  # FSDP over one rank would only add per-block all-gather/reduce-scatter copies and hooks
        apply_mixed_precision(model, param_dtype)
