"""Memory and communication per device, for ``shardwise plan``.

**Activations** are counted per token of one micro-batch, per decoder layer, in bytes, in the
manner of Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models" (whose GPT layer keeps ``s·b·h·(34 + 5·a·s/h)`` bytes with 16-bit activations), but for
the blocks shardwise trains: RMSNorm (HF upcasts to fp32), SwiGLU MLP, grouped-query attention,
no dropout, and SDPA/flash attention, which keeps no ``s × s`` scores (``eager`` attention keeps
its softmax, the ``5·a·s/h`` term). With ``e`` bytes per activation element (2 for bf16), hidden
``h``, query width ``hq = heads·head_dim``, key/value width ``hkv``, intermediate ``I``, ``t = tp``,
counted per token a device holds (``b·s/cp`` of them under context parallelism):

==========  =====================================================================================
``none``    ``n·r·h / t_sp`` (``n`` norms over the hidden width, 2 but Gemma's 4, each keeping ``r`` bytes per
            element: measured by ``norm_bytes``, ``4+e`` for Llama's (fp32 copy + normalized output), 8 where
            the weight is applied in fp32 (Gemma, OLMo 2))
            ``+ 2e·h`` (q/k/v and gate/up inputs, gathered: full sequence on every TP rank; ``e·h(1 + 1/t)``
            where each TP rank attends over its own rows, ``parallel.tp_attention=sequences``, and q/k/v read
            its tokens as they are)
            ``+ e(3hq + kv) / t`` (q, k, v into attention; its output, kept by SDPA and o_proj), where
            ``kv = 2hkv``, or ``2hq`` in layers whose K/V transformers repeats to the query heads first
            (eager attention, sdpa given a dense mask: its grouped-query path takes none, and fp32 compute,
            whose grouped-query path is sdpa's math kernel on GPUs: ``shardwise.sdpa``), and under
            context parallelism ``2·cp·hq``: every rank's K/V, repeated to the query heads (by
            ``cp.chunk_pair_attention``, or for the mask, which rules out sdpa's grouped-query path),
            ``2·cp·hkv`` where every layer attends through flex (``shardwise.flex``, which reads grouped
            heads in place); round a ring (``shardwise.ring``) only the rank's own, ``2hkv``, and
            ``4hkv`` compiled (the first block received too, whose shift forward and backward
            share; ``tests/test_cp.py`` measures both), counted where no layer needs a mask, in 16-bit
            compute (fp32 on GPUs falls back to the all-gather; plan counts the all-gather for fp32 on
            CPU too, where the ring does run)
            ``+ r(hq + hkv) / t`` (Qwen3's q/k norms) ``+ p·a·s / t`` (eager attention's scores, below)
            ``+ 4e·I / t`` (gate, up, silu(gate), product), ``I`` a mixture of experts' routed and shared
            widths where that is wider (``mlp_width``), ``+ 2e·k·h / t`` for its ``k`` experts' sorted inputs
            and weighed outputs (``routed_width``)
``full``    ``e·h / t_sp`` (the block input); one layer's ``none`` is recomputed during backward
``selective`` the outputs the policy keeps: block input ``e·h / t_sp``, q/k/v ``e(hq + 2hkv) / t``,
            attention ``e·hq / t``, o/down matmuls (partial sums, full sequence) ``2e·h``, their
            reduce-scatters ``2e·h / t`` (SP only), gate/up ``2e·I / t``; plus one layer's ``none``. Per
            sequence, o_proj's output is this rank's tokens and is not reduce-scattered: ``e·h(1 + 1/t)`` and
            ``e·h / t``
==========  =====================================================================================

Eager attention (``model.attn_implementation=eager``) keeps ``p`` bytes per score, ``a·s`` scores per token: its
softmax in fp32 and that cast to the compute dtype, ``4 + e``, and Gemma's soft-capped scores their ``tanh``, ``e``
more; compiled, ``2e``. One layer's backward works on ``8 + 2e`` bytes per score more (``4 + 2e`` compiled: the
fp32 softmax's gradient and its casts), counted with the recomputed layer (4×H100, ``2026-11-27-h100x4-archs-first``:
Gemma 2 on one GPU, eager, 3.72 GiB measured where ``e`` per score planned 1.92).

Compiled blocks (``train.compile``) keep less: a norm keeps only its input, ``e`` per element instead of
``4+e`` (Inductor recomputes the fp32 upcast; 2×H100, ``2026-11-25-h100x2-tp-speed-c``, Qwen2-1.5B tp=2
no checkpointing: sequence parallelism, which shards only the norms, saved 1.33 GiB beyond the final
norm, 2.0 bytes per hidden element per layer for the two norms' halves), and the MLP ``3e·I / t``
(silu(gate) is recomputed from gate; the dp_shard=2 row of the same sweep leaves 74.5 kB per token
and layer for its activations, which ``4e·I`` would put at 94 kB and ``3e·I`` at 76 kB).

``t_sp`` is ``tp`` with sequence parallelism and 1 without. Context parallelism adds the masks
``CausalLM`` builds once per step for all layers, one per distinct sliding window shorter than the
rows and, with eager attention or ``data.packing`` (whose rows plan takes to hold document
boundaries), one for whole rows: ``b·(s/cp)·s`` elements, 1 byte each for sdpa, ``e`` for eager
(sdpa over rows without a boundary needs none, ``cp.chunk_pair_attention``; without CP, masks of
packed rows are not counted; flex's ``BlockMask``s, a few integers per tile, neither). Every layer
whose sdpa takes such a dense mask keeps an additive copy of it for backward, ``e`` bytes per
element (``attention_bias``; with checkpointing only the recomputed layer's; 2.0 bytes per element
in bf16, eager and compiled, 2xH200, ``2026-11-27-h200x2-flex-compile``). Outside the blocks (never
compiled): the final norm and the gathered ``lm_head`` input.

**Logits** (``b·s·V/t`` elements, ``V/t`` only under loss parallelism) peak when the loss's backward
starts, with ``3·4 + 2e`` bytes each in eager mode: the logits and their gradient in compute dtype, and
in fp32 the log-softmax kept for backward and, during backward, the gradients of its output and of its
input (2×H100, ``2026-11-25-h100x2-smoke``: 10 bytes fell short of the eager bf16 parity peaks by
7-13%); Gemma's final soft-capping keeps its ``tanh``, ``e`` more. The compiled whole-vocabulary loss fuses
the upcast and the log-softmax into its kernels and keeps only ``2e``: the logits and their gradient (``2026-11-25-h100x2-cp``, Llama-3.1-8B at 32k tokens
on dp_shard=2: 49.5 GiB measured, of which 15.7 GiB, 4.0 bytes per logit, are left after the rest
counted here). The compiled vocab-parallel loss all-reduces the max, the sum of exponentials and the
target logit between its steps, so the shifted fp32 logits cross those collectives whole: ``4 + 2e``
(``2026-11-26-h100x2-loss``: Qwen2-1.5B at tp=2, micro-batch 4, 37.3 GiB measured, 4.6 less than
before ``loss._TargetLogit``, whose backward no longer scatters into a zeroed fp32 copy).

**Training state** is exact: parameters, gradients and AdamW's two states of rank 0's shards (rank
0 holds the largest), all in ``model.dtype`` (fp32 by default). FSDP keeps the root (embeddings,
final norm, lm_head) gathered from forward to the end of backward and up to two blocks in flight
(every block, with ``parallel.reshard_after_forward=false``), all in compute dtype; in backward, a
block's unsharded gradient (compute dtype), its fp32 reduce-scatter input and the previous
block's (FSDP keeps one in flight), and the root's unsharded gradient, held until its
reduce-scatter at the end; that reduce-scatter adds its fp32 input and output. With several
micro-batches per step and ``parallel.defer_grad_reduce``, the unsharded fp32 gradients of the
whole TP shard accumulate until the last one. Without FSDP (one data-parallel
rank) and with ``model.dtype`` wider than the compute dtype, each weight's compute-dtype copy stays
alive: eager, every one, cached from its first read to the next optimizer step (``shardwise.tp``);
in compiled blocks, cast per read, those saved for backward (with full checkpointing only the
recomputed block's; the root runs eager). A block's gradient arrives in compute dtype before it
is added to the master one. Blocks replayed as CUDA graphs (``train.cudagraphs``) cast per read as
compiled ones do, and their graphs hold every block's master-dtype gradients (the backward graphs'
outputs) and four hidden-state buffers per block (``graph_buffer_bytes``); the gradients stay
allocated between steps (``graphs.keep_grads``). The graphs' pool also keeps the working set of a
block's backward, its recomputed activations and their gradients (twice ``recompute``), for the whole
step: no other allocation can use it. A replay reuses the pool without allocating, which the bench's
peak allocated memory (reset after warmup) does not see; its peak *reserved* memory does, and the
total bounds it (1.5B tp=2: 20.2 GiB reserved under full checkpointing for 20.4 planned;
``2026-11-26-h100x4-nccl-graphs-memory``).

**The peak** (``total``) is the largest of three phases, never the sum of every term (gradients and
most activations never coexist): ``loss``, when the loss's backward starts: training state but the
gradients, unless earlier micro-batches of the step made them (``optimizer_step`` frees them with
``zero_grad(set_to_none=True)``), what FSDP or the compute copies hold, every saved activation,
the masks and the logits; ``backward``, the same with one recomputed layer and the gradients in
flight in place of the logits; ``step``, at the end of backward: the whole training state and the
root's reduce-scatter. With each term above, the total bounds every peak measured on 2×H100 so
far, within 10% for the runs above 10 GiB (``tests/test_plan.py`` reads them from
``benchmarks/results``); the CUDA runtime's buffers (below) are in every phase.

**Communication** per device counts what a ring implementation sends (= receives): all-gather
``(n-1)/n`` of its output, reduce-scatter ``(n-1)/n`` of its input, all-reduce twice that.
Tensor and context parallelism are *measured*: one and two decoder blocks, parallelized by the real
plan (TP styles, CP attention), run forward and backward (with the configured activation
checkpointing) on meta tensors under a fake process group while every collective is recorded, per
group; the difference is one layer. (CP: one all-gather of K and V per layer forward, again in a
recomputation, and one reduce-scatter of their gradients; round a ring, ``cp-1`` shifts of K and V
forward, as many in backward and ``cp`` of their fp32 gradients, all-to-alls that send the whole
block.) FSDP is counted from the parameters, over ``dp_shard·cp`` ranks: per micro-batch an
all-gather of each unit in forward and again in backward (not the root and the last block, which stay
gathered), or with ``parallel.reshard_after_forward=false`` one of each unit per step
(``parallelize.prepare_micro_batch``); a reduce-scatter of fp32 gradients per micro-batch (once per
step with ``parallel.defer_grad_reduce``) and, with HSDP, an all-reduce of the shards over replicas.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import PretrainedConfig

from shardwise.config import Config
from shardwise.loss import summed_cross_entropy
from shardwise.mesh import Layout, Meshes
from shardwise.model import build_meta_model, needs_mask
from shardwise.parallelize import apply_activation_checkpointing, apply_cp, apply_tp
from shardwise.plans import model_forward
from shardwise.plans.decoder import expert_width, has_dense_mlp, num_experts

FP32 = 4


@dataclass
class Dims:
    """The sizes the estimates need, and the run's shape of one micro-batch."""

    hidden: int
    q_dim: int
    kv_dim: int
    intermediate: int
    heads: int
    vocab: int
    layers: int
    qk_norm: bool
    eager: bool
    batch: int
    seq: int  # padded to ``Layout.seq_multiple``
    cp: int
    masks: int  # distinct dense attention masks of a forward under CP (see the module docstring)
    ring: bool = False  # CP's K/V pass round a ring: no layer needs a mask and parallel.cp_exchange=ring
    biased: int = 0  # layers whose sdpa keeps an additive copy of a dense mask for backward
    grouped: bool = False  # every layer attends through flex, which keeps CP's gathered K/V heads as they are
    norms: int = 2  # norms over the hidden width in a block (Gemma's 4)
    norm_bytes: float | None = None  # what a norm keeps per element, eager (``norm_bytes``); None: fp32 + e
    capped: bool = False  # eager attention soft-caps its scores (Gemma 2)
    logit_cap: bool = False  # the logits are soft-capped (Gemma 2)
    per_sequence: bool = False  # each TP rank attends over its own rows: attention's input and output stay local
    routed: int = 0  # a mixture of experts' k copies of a token's hidden state, sorted by expert (``routed_width``)

    @classmethod
    def of(cls, config: PretrainedConfig, cfg: Config, layout: Layout, qk_norm: bool, micro_batch: int,
           flex: bool = False, norms: int = 2, norm_bytes: float | None = None) -> Dims:
        """``flex``: rows that need a mask attend through flex's ``BlockMask``s (``flex.uses_flex``); ``norms``: a
        block's norms over the hidden width, keeping ``norm_bytes`` per element (``norm_bytes``)."""
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        seq = -(-cfg.train.seq_len // layout.seq_multiple) * layout.seq_multiple
        impl = cfg.model.attn_implementation
        windows = model_forward(config).windows()
        masked = [w for w in windows if needs_mask(impl, cfg.data.packing, w, seq)]
        dense = [] if flex else masked
        eager = impl == "eager"
        return cls(config.hidden_size, config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim,
                   mlp_width(config), config.num_attention_heads, config.vocab_size,
                   config.num_hidden_layers, qk_norm, eager, micro_batch, seq, layout.cp, len(set(dense)),
                   layout.cp > 1 and cfg.parallel.cp_exchange == "ring" and not masked,
                   len(dense) if impl == "sdpa" else 0, flex and len(masked) == len(windows), norms=norms,
                   norm_bytes=norm_bytes, capped=eager and getattr(config, "attn_logit_softcapping", None) is not None,
                   logit_cap=getattr(config, "final_logit_softcapping", None) is not None,
                   per_sequence=layout.tp > 1 and cfg.parallel.attention() == "sequences", routed=routed_width(config))

    def rings(self, e: int) -> bool:
        """Whether CP's K/V go round the ring at ``e`` bytes per activation: fp32 on GPUs has no kernel for it and
        all-gathers (counted so on CPU too, where the ring does run)."""
        return self.ring and e < FP32

    @property
    def tokens(self) -> int:
        """Tokens of one micro-batch on one device (before TP's sequence sharding)."""
        return self.batch * self.seq // self.cp


def norm_bytes(norm: nn.Module, dtype: torch.dtype, rows: int = 8) -> float:
    """Bytes per element of its input that a norm (``norm``, of any architecture, on the meta device) keeps for
    backward, measured: an eager copy on the CPU normalizes ``rows`` rows of ``dtype`` while every distinct tensor
    autograd saves with a row per input row is counted (the weight and its derivatives are not)."""
    probe = copy.deepcopy(norm).to_empty(device="cpu")
    with torch.no_grad():
        for param in probe.parameters():
            param.fill_(1.0)
    width = next(probe.parameters()).shape[-1]
    saved: dict[tuple[int, torch.dtype], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.dim() >= 2 and t.shape[0] == rows:
            saved[(t.data_ptr(), t.dtype)] = t.nbytes
        return t

    x = torch.ones(rows, width, dtype=dtype, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        probe(x)
    return sum(saved.values()) / x.numel()


def mlp_width(config: PretrainedConfig) -> int:
    """The intermediate width whose activations a block's MLP keeps per token, the widest block's: a mixture of
    experts' ``top-k`` routed experts and its shared one, or a dense layer's ``intermediate_size`` where there is
    one (Qwen2-MoE's ``mlp_only_layers``; Mixtral's experts are each ``intermediate_size`` wide, Qwen3-MoE's
    blocks leave it unused: ``plans.decoder.has_dense_mlp``)."""
    routed = config.num_experts_per_tok * expert_width(config) if num_experts(config) else 0
    dense = config.intermediate_size if has_dense_mlp(config) else 0
    return max(dense, routed + (getattr(config, "shared_expert_intermediate_size", 0) or 0))


def routed_width(config: PretrainedConfig) -> int:
    """What a mixture of experts keeps per token beyond its intermediate widths, in hidden-state elements: the
    ``top-k`` copies of each token's input sorted by expert, and as many of the experts' outputs before they are
    weighed (each saved for backward; 1×H200, call 158: 2 × (8192, 512) fp32 a layer at ``gpu_archs.sh``'s
    Mixtral shapes); 0 for a dense model."""
    return config.num_experts_per_tok * config.hidden_size if num_experts(config) else 0


def score_bytes(d: Dims, e: int, compiled: bool) -> tuple[int, int]:
    """Bytes per eager attention score: kept until backward, and worked on by one layer's backward (module
    docstring); 0 without eager attention."""
    if not d.eager:
        return 0, 0
    if compiled:
        return 2 * e, FP32 + 2 * e
    return FP32 + e + e * d.capped, 2 * FP32 + 2 * e


def graph_buffer_bytes(d: Dims, e: int, tp: int, sp: bool) -> float:
    """What CUDA graphs of the blocks (``shardwise.graphs``) keep beside the gradients: per block, the hidden states
    it is replayed from and returns, and their two gradients."""
    return 4 * d.layers * d.tokens * d.hidden * e / (tp if sp else 1)


def layer_bytes_per_token(d: Dims, mode: str, e: int, tp: int, sp: bool, compiled: bool = False) -> float:
    """Activation bytes one decoder layer keeps per token until backward (see the module docstring)."""
    t_sp = tp if sp else 1
    if d.cp > 1:
        kv = 2 * d.cp * (d.kv_dim if d.grouped else d.q_dim)
    else:
        # layers whose K/V are repeated to the query heads; in fp32 all (``shardwise.sdpa``, on GPUs)
        repeated = d.layers if d.eager or e == FP32 else d.biased
        kv = 2 * (d.kv_dim * (d.layers - repeated) + d.q_dim * repeated) / d.layers
    if d.rings(e):
        kv = (4 if compiled else 2) * d.kv_dim
    # per element of a norm's input: compiled, the fp32 upcast is recomputed
    norm = e if compiled else d.norm_bytes or FP32 + e
    # compiled, silu(gate) is recomputed from gate; a mixture of experts keeps its sorted inputs and weighted outputs
    mlp = (3 if compiled else 4) * e * d.intermediate + 2 * e * d.routed
    # attention's and the MLP's inputs, gathered (per sequence, attention's is this rank's tokens); selective keeps
    # o_proj's and down_proj's outputs alike
    gathered = e * d.hidden * (1 + 1 / tp if d.per_sequence else 2)
    none = (d.norms * norm * d.hidden / t_sp + gathered
            + (e * (3 * d.q_dim + kv) + norm * (d.q_dim + d.kv_dim) * d.qk_norm
               + score_bytes(d, e, compiled)[0] * d.heads * d.seq + mlp) / tp)
    if mode == "none":
        return none
    block_input = e * d.hidden / t_sp
    if mode == "full":
        return block_input
    reduce_scatters = (1 if d.per_sequence else 2) * e * d.hidden / tp if sp and tp > 1 else 0.0
    return block_input + e * (2 * d.q_dim + 2 * d.kv_dim + 2 * d.intermediate) / tp + gathered + reduce_scatters


def logit_bytes(e: int, compiled: bool, loss_parallel: bool, capped: bool = False) -> int:
    """Bytes per logit element at the loss's peak, the start of its backward (see the module docstring)."""
    cap = e if capped else 0
    if not compiled:
        return 3 * FP32 + 2 * e + cap
    return (FP32 + 2 * e if loss_parallel else 2 * e) + cap


def activation_bytes(d: Dims, mode: str, e: int, tp: int, sp: bool, loss_parallel: bool,
                     compiled: bool = False) -> dict[str, float]:
    """Bytes per device for one micro-batch: what the decoder layers and the top keep for backward, the one layer
    recomputed during backward, the logits at the loss's peak and, under context parallelism, the attention masks."""
    layers = d.layers * layer_bytes_per_token(d, mode, e, tp, sp, compiled)
    recompute = layer_bytes_per_token(d, "none", e, tp, sp, compiled) if mode != "none" else 0.0
    recompute += score_bytes(d, e, compiled)[1] * d.heads * d.seq / tp  # one layer's eager attention backward
    top = (FP32 + e) * d.hidden / (tp if sp else 1) + e * d.hidden
    vocab = d.vocab / tp if loss_parallel and tp > 1 else d.vocab
    out = {"activations": d.tokens * (layers + top), "recompute": d.tokens * recompute,
           "logits": d.tokens * vocab * logit_bytes(e, compiled, loss_parallel and tp > 1, d.logit_cap)}
    if d.cp > 1:
        out["attention_masks"] = d.masks * d.tokens * d.seq * (e if d.eager else 1)
    if d.biased:  # one layer's additive copy of its dense mask, in every layer kept without checkpointing
        bias = d.tokens * d.seq * e / (tp if d.per_sequence else 1)
        out["activations"] += d.biased * bias if mode == "none" else 0.0
        out["recompute"] += bias if mode != "none" else 0.0
    return out


def ring_bytes(op: str, nbytes: int, n: int) -> float:
    """Bytes one rank sends for a collective over ``n`` ranks whose (per-rank) input has ``nbytes``."""
    if n <= 1:
        return 0.0
    if op == "all_gather_into_tensor":
        return nbytes * (n - 1)
    if op == "all_reduce":
        return 2 * nbytes * (n - 1) / n
    return nbytes * (n - 1) / n  # reduce_scatter_tensor, all_to_all_single


def sent_bytes(op: str, args: tuple, n: int, rank: int) -> float:
    """Bytes this rank (``rank`` of ``n``) sends for one functional collective called with ``args``: an all-to-all
    with its splits given sends all but its own split (the CP ring's shifts send the whole input to one rank)."""
    splits = args[2] if op == "all_to_all_single" else None
    if splits and n > 1:
        return args[0].nbytes * (sum(splits) - splits[rank]) / sum(splits)
    return ring_bytes(op, args[0].nbytes, n)


class CollectiveRecorder(TorchDispatchMode):
    """Adds up, per mesh and collective kind, the calls and ring bytes of every functional collective."""

    KINDS = ("all_gather_into_tensor", "reduce_scatter_tensor", "all_reduce", "all_to_all_single")

    def __init__(self, meshes: dict[str, DeviceMesh]):
        super().__init__()
        # a functional collective names its process group last
        self.groups = {mesh.get_group().group_name: (label, mesh.size()) for label, mesh in meshes.items()}
        self.ranks = {label: mesh.get_local_rank() for label, mesh in meshes.items()}
        self.calls = {label: {k: 0 for k in self.KINDS} for label in meshes}
        self.bytes = {label: {k: 0.0 for k in self.KINDS} for label in meshes}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._opname
        if func.namespace == "_c10d_functional" and name in self.KINDS:
            label, size = self.groups[args[-1]]
            self.calls[label][name] += 1
            self.bytes[label][name] += sent_bytes(name, args, size, self.ranks[label])
        return func(*args, **(kwargs or {}))


def _parallel_step(config: PretrainedConfig, cfg: Config, layout: Layout, meshes: Meshes, layers: int,
                   dtype: torch.dtype, d: Dims) -> CollectiveRecorder:
    """Forward + backward of a ``layers``-block model under TP and CP only, on meta tensors, recording
    collectives."""
    small = copy.deepcopy(config)
    small.num_hidden_layers = layers
    if num_experts(config):  # torch's meta grouped_mm takes bf16 only; batched matmuls issue the same (no) collectives
        small._experts_implementation = "batched_mm"
    model = build_meta_model(small)
    if layout.tp > 1:
        apply_tp(model, meshes.tp, cfg.parallel)
    if layout.cp > 1:
        apply_cp(model, meshes.cp, "ring" if d.rings(dtype.itemsize) else "allgather")
    apply_activation_checkpointing(model, cfg.train.activation_checkpointing)
    model.to(dtype)
    local = d.seq // d.cp
    ids = torch.zeros(d.batch, local, dtype=torch.long, device="meta")
    positions = torch.arange(local, device="meta").expand(d.batch, local)
    documents = torch.zeros(d.batch, d.seq, dtype=torch.long, device="meta")
    recorder = CollectiveRecorder({"tp": meshes.tp, "cp": meshes.cp})
    with recorder:
        summed_cross_entropy(model(ids, positions, documents=documents), ids).backward()
    return recorder


def parallel_comm(config: PretrainedConfig, cfg: Config, layout: Layout, meshes: Meshes, dtype: torch.dtype, d: Dims,
                  micro_batches: int) -> dict[str, dict | None]:
    """Measured TP and CP collectives (None for a degree of 1): per layer per micro-batch, outside the layers,
    and per step (bytes per device)."""
    one, two = (_parallel_step(config, cfg, layout, meshes, n, dtype, d) for n in (1, 2))
    kinds = CollectiveRecorder.KINDS
    out: dict[str, dict | None] = {}
    for label, degree in (("tp", layout.tp), ("cp", layout.cp)):
        calls = {k: (one.calls[label][k], two.calls[label][k]) for k in kinds}
        sent = {k: (one.bytes[label][k], two.bytes[label][k]) for k in kinds}
        layer = {k: {"calls": calls[k][1] - calls[k][0], "bytes": sent[k][1] - sent[k][0]} for k in kinds}
        top = {k: {"calls": calls[k][0] - layer[k]["calls"], "bytes": sent[k][0] - layer[k]["bytes"]} for k in kinds}
        step = {k: micro_batches * (d.layers * layer[k]["bytes"] + top[k]["bytes"]) for k in kinds}
        out[label] = {"per_layer_per_micro_batch": layer, "outside_layers_per_micro_batch": top,
                      "per_step_bytes": step} if degree > 1 else None
    return out


def fsdp_comm(unit_numels: list[int], shard: int, replicate: int, param_bytes: int,
              micro_batches: int, defer_grad_reduce: bool = False, reshard_after_forward: bool = True
              ) -> dict[str, float]:
    """FSDP collectives per step, bytes per device. ``unit_numels[0]`` is the root, then one per block.

    ``unit_numels`` count the tensor-parallel shard each FSDP group gathers (global / tp when TP-sharded).
    Gradients are reduced after every micro-batch, or once per step with ``defer_grad_reduce``. Blocks are
    gathered for each micro-batch's forward and again for its backward (the root and the last block only for
    forward); without ``reshard_after_forward`` every unit once per step.
    """
    reductions = 1 if defer_grad_reduce else micro_batches
    unit = [ring_bytes("all_gather_into_tensor", n * param_bytes / shard, shard) for n in unit_numels]
    passes = [1 if i in (0, len(unit) - 1) else 2 for i in range(len(unit))]
    per_micro_batch = sum(p * u for p, u in zip(passes, unit, strict=True))
    gathers = micro_batches * per_micro_batch if reshard_after_forward else sum(unit)
    total = sum(unit_numels)
    return {
        "all_gather": gathers,
        "reduce_scatter": reductions * ring_bytes("reduce_scatter_tensor", total * FP32, shard),
        "all_reduce_replicas": reductions * ring_bytes("all_reduce", total * FP32 / shard, replicate),
    }


# What a CUDA device holds besides tensors of the model: cuBLAS/cuBLASLt workspaces (32 MiB for each stream
# that runs matmuls, and autograd and FSDP use several) and small buffers; max_memory_allocated counts them.
CUDA_RUNTIME_BYTES = 256 * 2**20


def memory(local_numel: int, unit_numels: list[int], micro_batches: int, param_bytes: int,
           acts: dict[str, float], defer_grad_reduce: bool = False, cuda: bool = False,
           fsdp: bool = True, master_bytes: int = FP32, checkpointing: str = "none", shard: int = 1,
           compiled: bool = False, reshard_after_forward: bool = True, graph_buffers: float | None = None,
           partial_numel: int = 0) -> dict[str, float]:
    """Bytes per device: rank 0's exact training state and the estimated transients, each term once, and the peak
    (``total``): the largest of the three phases in ``phases`` (see the module docstring).

    ``master_bytes`` is ``model.dtype``'s size: the weights, their gradients and AdamW's moments are all in it.
    ``unit_numels[0]`` is the root's (embeddings, final norm, lm_head), then one per block, as ``fsdp_comm``;
    ``shard`` is the FSDP shard group's size, ``dp_shard * cp``; ``compiled``: the blocks run compiled; without
    ``reshard_after_forward`` every block stays gathered from its forward to its backward. ``graph_buffers`` (not
    None: the blocks replay CUDA graphs, ``graph_buffer_bytes``): graphs cast per read like compiled blocks, hold
    every block's gradients as outputs of their backward graphs, and keep ``.grad`` between steps. ``partial_numel``:
    this rank's elements of the replicated parameters whose gradients are summed over TP ranks before the step, in
    one flat buffer (``tp.sum_partial_grads``; attention's weights where it is computed per sequence)."""
    root, largest = unit_numels[0], max(unit_numels[1:], default=0)
    graphs = graph_buffers is not None
    if fsdp:
        gathered = 2 * largest if reshard_after_forward else sum(unit_numels[1:])
        resident = {"fsdp_in_flight": param_bytes * (root + gathered)}
        backward = {"fsdp_grads_in_flight": (param_bytes + 2 * FP32) * largest + param_bytes * root}
        end = {"fsdp_root_reduce": (param_bytes + FP32 + FP32 / shard) * root + FP32 * largest}
    else:
        cast = param_bytes if param_bytes < master_bytes else 0  # a compute copy only when the dtypes differ
        # eager reads keep every block's copy cached; compiled blocks and graphs cast per read (full: recomputed
        # block's only)
        kept = largest if (compiled or graphs) and checkpointing == "full" else sum(unit_numels[1:])
        resident = {"compute_copies": cast * (root + kept)}
        if graphs:
            resident |= {"graph_grads": master_bytes * sum(unit_numels[1:]), "graph_buffers": graph_buffers,
                         "graph_workspace": 2 * acts["recompute"]}
        backward = {"unreduced_grads": cast * largest}
        end = {}
    end["partial_grad_sum"] = master_bytes * partial_numel
    parts = {
        "parameters": master_bytes * local_numel,
        "gradients": master_bytes * local_numel,
        "optimizer_states": 2 * master_bytes * local_numel,
        **resident, **backward, **end,
        "gradient_accumulation": FP32 * sum(unit_numels) if micro_batches > 1 and defer_grad_reduce else 0.0,
        **acts,
        "cuda_runtime": CUDA_RUNTIME_BYTES if cuda else 0.0,
    }
    state = parts["parameters"] + parts["optimizer_states"] + parts["gradient_accumulation"] + parts["cuda_runtime"]
    # zero_grad(set_to_none) frees them after each step, unless graphs need them kept (``graphs.keep_grads``)
    earlier = parts["gradients"] if micro_batches > 1 or graphs else 0.0
    held = state + sum(resident.values()) + earlier + acts["activations"] + acts.get("attention_masks", 0.0)
    phases = {"loss": held + acts["logits"],
              "backward": held + (0.0 if graphs else acts["recompute"]) + sum(backward.values()),
              "step": state + sum(resident.values()) + parts["gradients"] + sum(end.values())}
    return {**parts, "phases": phases, "total": max(phases.values())}
