"""``shardwise plan``: what a run will hold and send on each device, and what will refuse it, before launch.

No GPU and no processes: a fake process group (``torch.testing._internal.distributed.fake_pg``) of
the planned world size stands in for the real one, seen from rank 0. The model is built on the meta
device and sharded by the real ``shardwise.parallelize`` (tensor parallelism, then FSDP), so every
shape and placement printed is what rank 0 of the real run gets, never a re-derivation. Memory and
communication come from ``shardwise.estimate``, whose docstring gives the formulas.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

from shardwise import estimate, graphs
from shardwise.config import Config, ConfigError
from shardwise.data import StepBatches, micro_batch_size
from shardwise.flex import uses_flex
from shardwise.mesh import Layout, build_mesh, resolve_layout
from shardwise.model import CausalLM, build_meta_model, hf_config, num_params
from shardwise.parallelize import divisibility_errors, parallelize
from shardwise.plans import TPPlan, get_plan
from shardwise.plans.decoder import num_experts
from shardwise.run import compute_dtype
from shardwise.tp import local_tensor, partial_grad_params

GIB = 2**30


@contextmanager
def fake_world(world_size: int) -> Iterator[None]:
    """Rank 0 of a ``world_size`` process group whose collectives do nothing: enough to shard meta tensors."""
    from torch.testing._internal.distributed.fake_pg import FakeStore  # registers the "fake" backend

    dist.init_process_group(backend="fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def param_layout(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Each unique parameter's global shape, this rank's local shape and placements (verify records it too)."""
    out = {}
    for name, p in model.named_parameters():  # tied weights are listed once, under the embedding
        local = local_tensor(p)
        out[name.removeprefix("hf.")] = {
            "global_shape": list(p.shape), "local_shape": list(local.shape),
            "placements": [str(x) for x in p.placements] if isinstance(p, DTensor) else [],
            "mesh_dims": list(p.device_mesh.mesh_dim_names) if isinstance(p, DTensor) else [],
        }
    return out


def group_name(name: str) -> str:
    """``model.layers.7.mlp.up_proj.weight`` -> ``model.layers.*.mlp.up_proj.weight``."""
    return re.sub(r"\.layers\.\d+\.", ".layers.*.", name)


def param_table(layout: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per parameter outside the blocks and per parameter of block 0, with how many share it."""
    rows: dict[str, dict[str, Any]] = {}
    for name, info in layout.items():
        key = group_name(name)
        if key in rows:
            rows[key]["count"] += 1
        else:
            rows[key] = {"name": key, "count": 1, **info}
    return list(rows.values())


def style_table(plan: TPPlan, model: CausalLM) -> list[dict[str, str]]:
    """The plan registry's entries with the class of the module each one shards."""
    rows = []
    for scope, root, styles in (("top", model, plan.top), ("block", model.layers[0], plan.block)):
        for path, style in styles.items():
            rows.append({"scope": scope, "module": path, "class": type(root.get_submodule(path)).__name__,
                         "style": repr(style)})
    return rows


def head_split(config: Any, tp: int, rows: int | None = None) -> dict[str, int]:
    """Query and KV heads each rank computes, and how many ranks compute each KV head: more than one
    where ``tp`` exceeds the KV heads (Megatron's KV replication, ``shardwise.tp.head_rows``). Attention computed
    per sequence (``parallel.tp_attention=sequences``) keeps every head, over ``rows`` rows of each micro-batch."""
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    if rows is not None:
        return {"query_heads_per_rank": heads, "kv_heads_per_rank": kv, "ranks_per_kv_head": 1, "rows_per_rank": rows}
    return {"query_heads_per_rank": heads // tp, "kv_heads_per_rank": max(kv // tp, 1),
            "ranks_per_kv_head": max(tp // kv, 1)}


def _attempt(checks: list[dict[str, Any]], name: str, fn: Callable[[], Any]) -> Any:
    """Run one check; record it as passed, or failed with its one-line message, and return its result."""
    try:
        result = fn()
    except ConfigError as err:
        checks.append({"check": name, "ok": False, "message": str(err)})
        return None
    checks.append({"check": name, "ok": True, "message": ""})
    return result


def fsdp_units(model: CausalLM) -> list[int]:
    """Per FSDP unit (root, then each block), the elements its group gathers: the TP shard of each parameter."""
    units = [0] * (len(model.layers) + 1)
    for name, p in {id(p): (n, p) for n, p in model.named_parameters()}.values():
        match = re.search(r"\.layers\.(\d+)\.", name)
        names = p.device_mesh.mesh_dim_names if isinstance(p, DTensor) else ()
        tp_sharded = "tp" in names and p.placements[names.index("tp")].is_shard()
        units[int(match.group(1)) + 1 if match else 0] += p.numel() // (p.device_mesh["tp"].size() if tp_sharded else 1)
    return units


def without_gpu_only(cfg: Config) -> Config:
    """``cfg`` as plan parallelizes its CPU meta model: without async TP, which reschedules the same collectives on
    GPUs (nothing to count), without CUDA graphs, which replay them (``estimate.memory`` counts what their
    graphs hold), and without flex attention, which moves no parameter or collective; all three refuse CPU."""
    return dataclasses.replace(cfg, parallel=dataclasses.replace(cfg.parallel, async_tp=False),
                               train=dataclasses.replace(cfg.train, cudagraphs=False),
                               model=dataclasses.replace(cfg.model, packed_attention="mask"))


def attends_with_flex(cfg: Config, config: Any, cuda: bool) -> bool:
    """Whether the run attends through flex (``flex.uses_flex``), which plan takes as asked for where it plans on a
    CPU for GPUs (``model.packed_attention=flex``)."""
    return cfg.model.packed_attention == "flex" or uses_flex(cfg, config, "cuda" if cuda else "cpu")


def _sharded_report(cfg: Config, config: Any, layout: Layout, dtype: torch.dtype, micro_batches: int,
                    cuda: bool, budget_gib: float | None) -> dict:
    """Placements, memory and communication from the real parallelization on meta tensors; with FSDP, whether its
    blocks stay gathered from forward to backward (``parallel.reshard_after_forward=auto``: where that fits
    within ``RECOMMEND_HEADROOM`` of ``budget_gib``, as a recommendation must)."""
    tp, sp = layout.tp, cfg.parallel.shards_tokens()
    micro = micro_batch_size(cfg.train.global_batch_size, cfg.train.micro_batch_size, layout.dp)
    with fake_world(layout.world_size):
        meshes = build_mesh(layout, "cpu")
        model = build_meta_model(config)
        plan = get_plan(config, sp, cfg.parallel.loss_parallel, cfg.parallel.attention())
        styles = style_table(plan, model) if tp > 1 else []
        qk_norm = hasattr(model.layers[0].self_attn, "q_norm")
        norms = [m for name, m in model.layers[0].named_children() if name.endswith("layernorm")]
        kept = estimate.norm_bytes(norms[0], dtype)
        parallelize(model, without_gpu_only(cfg), meshes, layout, dtype)
        layout_rows = param_layout(model)
        units = fsdp_units(model)
        local = sum(local_tensor(p).numel()
                    for p in {id(p): p for p in model.parameters()}.values())
        partial = sum(p.to_local().numel() for p in {id(p): p for p in partial_grad_params(model)}.values())
        dims = estimate.Dims.of(config, cfg, layout, qk_norm, micro, attends_with_flex(cfg, config, cuda), len(norms),
                                kept)
        comm = {"tp": None, "cp": None}
        if tp > 1 or layout.cp > 1:
            comm = estimate.parallel_comm(config, cfg, layout, meshes, dtype, dims, micro_batches)
        if comm["tp"]:  # once per step, replicated parameters whose gradients each rank holds a part of
            master = getattr(torch, cfg.model.dtype).itemsize
            comm["tp"]["per_step_bytes"]["all_reduce"] += estimate.ring_bytes("all_reduce", partial * master, tp)
    e = dtype.itemsize
    lp = cfg.parallel.loss_parallel and tp > 1
    per_rank = cfg.train.global_batch_size // layout.dp
    compiled = cfg.train.compiles("cuda" if cuda else "cpu")

    fsdp = layout.dp_cp > 1
    rows = tp if dims.per_sequence else 1  # sequences per TP rank that micro-batches must hold whole

    def memory_for(mode: str, micro_batch: int, reshard: bool) -> dict[str, float]:
        shape = dataclasses.replace(dims, batch=micro_batch)
        acts = estimate.activation_bytes(shape, mode, e, tp, sp, lp, compiled)
        graph_buffers = estimate.graph_buffer_bytes(shape, e, tp, sp) if cfg.train.cudagraphs else None
        return estimate.memory(local, units, max(1, per_rank // micro_batch), e, acts, cfg.parallel.defer_grad_reduce,
                               cuda, fsdp, getattr(torch, cfg.model.dtype).itemsize, mode,
                               layout.dp_shard * layout.cp, compiled, reshard, graph_buffers, partial)

    mode, reshard = cfg.train.activation_checkpointing, cfg.parallel.reshards()
    if fsdp and cfg.parallel.reshard_after_forward == "auto" and budget_gib is not None:
        reshard = not fits(memory_for(mode, dims.batch, False)["total"], budget_gib)
    return {
        "num_params": num_params(model),
        "reshard_after_forward": reshard if fsdp else None,
        "styles": styles,
        "heads": head_split(config, tp, micro // tp if dims.per_sequence else None) if tp > 1 else None,
        "parameters": param_table(layout_rows),
        "memory_bytes": memory_for(mode, dims.batch, reshard),
        "memory_options": [{"activation_checkpointing": option, "micro_batch_size": mb,
                            "reshard_after_forward": frees if fsdp else None,
                            "total_bytes": memory_for(option, mb, frees)["total"]}
                           for option in RECOMMEND_ORDER for mb in _micro_batch_choices(per_rank, rows)
                           for frees in ((True, False) if fsdp else (True,))],
        "comm_bytes": {**comm, "fsdp": estimate.fsdp_comm(units, layout.dp_shard * layout.cp, layout.dp_replicate, e,
                                                          micro_batches, cfg.parallel.defer_grad_reduce, reshard)},
    }


# Fastest first, measured on 1xH100 (BENCHMARKS.md): no checkpointing beats full at equal micro-batch, and
# selective (its save policy runs in eager dispatch around compiled blocks) was slower than full.
RECOMMEND_ORDER = ("none", "full")


def _micro_batch_choices(per_rank: int, rows: int = 1) -> list[int]:
    """Micro-batch sizes that split a DP rank's share of the global batch evenly, largest first; multiples of
    ``rows`` (``tp`` where each TP rank attends over whole rows)."""
    return [mb for mb in range(per_rank, 0, -1) if per_rank % mb == 0 and mb % rows == 0] or [rows]


# Share of the device a recommendation may plan to fill. The estimate bounds the allocated peak
# (max_memory_allocated) within 1-10% on the 2xH100 rows; the caching allocator reserves more than that
# (fragmentation) and a run fails when the reservation, not the allocation, exceeds the device.
RECOMMEND_HEADROOM = 0.9


def fits(total_bytes: float, budget_gib: float, share: float = RECOMMEND_HEADROOM) -> bool:
    """Whether a planned total fits ``share`` of the device: the rule of a recommendation and of ``auto``."""
    return total_bytes <= share * budget_gib * GIB


def recommend(options: list[dict[str, Any]], budget_gib: float) -> dict[str, Any] | None:
    """The fastest setting that fits with headroom (no checkpointing at the largest micro-batch that fits, else
    full; with FSDP, blocks kept gathered from forward to backward where that fits too: 1.05x for Llama-3-8B
    shapes at dp_shard=2 on 2xH200, BENCHMARKS.md); failing that, the fastest that fits the whole device, marked
    ``tight``."""
    for share in (RECOMMEND_HEADROOM, 1.0):
        for mode in RECOMMEND_ORDER:
            fitting = [o for o in options if o["activation_checkpointing"] == mode
                       and fits(o["total_bytes"], budget_gib, share)]
            if fitting:
                best = max(fitting, key=lambda o: (o["micro_batch_size"], o["reshard_after_forward"] is False))
                return {**best, "tight": share > RECOMMEND_HEADROOM}
    return None


def _setting_flags(rec: dict[str, Any]) -> str:
    """A recommendation as the flags that choose it."""
    keep = "" if rec["reshard_after_forward"] is None else (
        f" --parallel.reshard_after_forward={str(rec['reshard_after_forward']).lower()}")
    return (f"--train.activation_checkpointing={rec['activation_checkpointing']} "
            f"--train.micro_batch_size={rec['micro_batch_size']}{keep}")


def structural_checks(cfg: Config, config: Any, world_size: int) -> tuple[list[dict[str, Any]], Layout | None]:
    """Layout, architecture, shapes, CUDA graphs and batch split, all of them (not only the first that fails)."""
    checks: list[dict[str, Any]] = []
    layout = _attempt(checks, "world size vs. mesh", lambda: resolve_layout(cfg.parallel, world_size))
    _attempt(checks, "architecture", lambda: get_plan(config, True, True))
    for message in divisibility_errors(config, cfg, *((layout.tp, layout.dp) if layout else (cfg.parallel.tp,))):
        checks.append({"check": "shapes", "ok": False, "message": message})
    if cfg.train.cudagraphs and layout:  # planned as on GPUs, like train.compile=auto
        checks += [{"check": "CUDA graphs", "ok": False, "message": m} for m in graphs.errors(config, layout)]
    if layout:  # StepBatches checks the batch split before it touches any data
        t = cfg.train
        _attempt(checks, "batch split", lambda: StepBatches(None, t.global_batch_size, t.micro_batch_size, 0, layout.dp))
    return checks, layout


def _memory_check(total_bytes: float, budget_gib: float) -> dict[str, Any]:
    need = total_bytes / GIB
    message = "" if need <= budget_gib else (
        f"needs about {need:.1f} GiB per device, more than --device-memory-gib={budget_gib:g}; raise parallel.tp or "
        "parallel.dp_shard, lower train.micro_batch_size, or set train.activation_checkpointing=full")
    return {"check": "memory", "ok": need <= budget_gib, "message": message}


def _summary(cfg: Config, config: Any, world_size: int, layout: Layout | None, dtype: torch.dtype) -> dict[str, Any]:
    t, tp = cfg.train, layout.tp if layout else cfg.parallel.tp
    micro = micro_batch_size(t.global_batch_size, t.micro_batch_size, layout.dp if layout else 1)
    return {
        "model": {"preset": None if cfg.model.path else cfg.model.preset, "path": cfg.model.path or None,
                  "model_type": config.model_type, "layers": config.num_hidden_layers,
                  "hidden_size": config.hidden_size, "attention_heads": config.num_attention_heads,
                  "kv_heads": config.num_key_value_heads, "vocab_size": config.vocab_size,
                  "tied_embeddings": bool(config.tie_word_embeddings), "experts": num_experts(config)},
        "world_size": world_size,
        "mesh": layout.sizes() if layout else None,
        "sequence_parallel": cfg.parallel.shards_tokens(),
        "loss_parallel": cfg.parallel.loss_parallel and tp > 1,
        "compute_dtype": str(dtype).removeprefix("torch."),
        "master_dtype": cfg.model.dtype,
        "batch": {"micro_batch_size": micro, "seq_len": t.seq_len,
                  "micro_batches_per_step": max(1, t.global_batch_size // (layout.dp * micro)) if layout else None},
        "activation_checkpointing": t.activation_checkpointing,
        "reshard_setting": cfg.parallel.reshard_after_forward,
        "tp_attention": cfg.parallel.attention() if tp > 1 else None,
    }


def make_plan(cfg: Config, world_size: int, device_memory_gib: float | None) -> dict[str, Any]:
    """The whole report as one JSON-able dict; ``ok`` is False when any check fails.

    ``train.dtype=auto`` and ``train.compile=auto`` are planned as on a GPU (bf16, compiled) when this machine
    has one or a memory budget is given, as on CPU (fp32, eager) otherwise. The budget defaults to this machine's GPU memory;
    with one, the plan also recommends the fastest activation checkpointing and micro-batch that fit.
    ``parallel.tp_attention=auto`` is planned as ``attention_choice`` decides.
    """
    config = hf_config(cfg.model)
    if device_memory_gib is None and torch.cuda.is_available():  # plan for this machine's GPUs
        device_memory_gib = torch.cuda.get_device_properties(0).total_memory / GIB
    if cfg.parallel.tp_attention == "auto":
        report = attention_choice(cfg, config, world_size, device_memory_gib)
    else:
        report = _plan(cfg, config, world_size, device_memory_gib)
    options = report.pop("memory_options", None)
    if options is not None and device_memory_gib is not None:
        report["recommended"] = recommend(options, device_memory_gib)
    return report


def attention_choice(cfg: Config, config: Any, world_size: int, budget_gib: float | None) -> dict[str, Any]:
    """``parallel.tp_attention=auto``: the plan of attention per sequence where that layout runs (sequence
    parallelism, ``cp=1``, micro-batches of a multiple of ``tp`` rows, shapes that heads could split too, so that
    auto never accepts what it would refuse elsewhere) and fits within ``RECOMMEND_HEADROOM`` of the device, else
    the plan of attention split by heads; without a device to plan for (CPU runs) by heads. ``tp_attention_why``
    says why. Its settings to recommend are each planned in the layout auto would choose for them, so that a
    recommendation, once set, is planned as it was recommended."""
    p, t = cfg.parallel, cfg.train
    heads = _plan(_attending(cfg, "heads"), config, world_size, budget_gib)
    layout = None if heads["mesh"] is None else resolve_layout(p, world_size)
    if layout is None or layout.tp == 1:
        return heads | {"tp_attention_why": None if layout else "the layout is refused either way"}
    if budget_gib is None:
        return heads | {"tp_attention_why": "no device memory to plan for"}
    if not p.holds_whole_rows():
        return heads | {"tp_attention_why": "per sequence needs parallel.sequence_parallel=true and parallel.cp=1"}
    if "memory_options" not in heads:  # refused before its memory could be planned
        return heads | {"tp_attention_why": "the layout is refused either way"}
    micro = micro_batch_size(t.global_batch_size, t.micro_batch_size, layout.dp)
    valid = _micro_batch_choices(t.global_batch_size // layout.dp, layout.tp)  # planned at one of them at least
    seq = _plan(_attending(cfg, "sequences", micro if micro % layout.tp == 0 else valid[-1]), config, world_size,
                budget_gib)
    failed = [c["message"] for c in seq["checks"] if not c["ok"] and c["check"] != "memory"]
    if failed:
        return heads | {"tp_attention_why": failed[0].split("; set ")[0]}
    heads["memory_options"] = _auto_options(seq["memory_options"], heads["memory_options"], budget_gib)
    if micro % layout.tp:
        why = f"micro-batches of {micro} sequence{'s' * (micro > 1)}, not a multiple of parallel.tp={layout.tp}"
    elif not fits(seq["memory_bytes"]["total"], budget_gib):
        why = (f"per sequence would need about {_size(seq['memory_bytes']['total'])}, more than "
               f"{RECOMMEND_HEADROOM:.0%} of {budget_gib:g} GiB")
    else:
        return seq | {"memory_options": heads["memory_options"],
                      "tp_attention_why": f"fits within {RECOMMEND_HEADROOM:.0%} of {budget_gib:g} GiB"}
    return heads | {"tp_attention_why": why}


def _auto_options(seq: list[dict[str, Any]], heads: list[dict[str, Any]], budget_gib: float) -> list[dict[str, Any]]:
    """Each setting of ``heads`` as ``parallel.tp_attention=auto`` would plan it: per sequence where ``seq`` has it
    (micro-batches of a multiple of ``tp``) and it fits with headroom, else by heads."""
    def key(o: dict[str, Any]) -> tuple:
        return o["activation_checkpointing"], o["micro_batch_size"], o["reshard_after_forward"]

    per_sequence = {key(o): o for o in seq if fits(o["total_bytes"], budget_gib)}
    return [per_sequence.get(key(o), o) for o in heads]


def _attending(cfg: Config, mode: str, micro_batch: int | None = None) -> Config:
    """``cfg`` with ``parallel.tp_attention=mode`` (and ``train.micro_batch_size=micro_batch``)."""
    train = cfg.train if micro_batch is None else dataclasses.replace(cfg.train, micro_batch_size=micro_batch)
    return dataclasses.replace(cfg, parallel=dataclasses.replace(cfg.parallel, tp_attention=mode), train=train)


def _plan(cfg: Config, config: Any, world_size: int, device_memory_gib: float | None) -> dict[str, Any]:
    """``make_plan`` of one attention layout; its settings to recommend are left in ``memory_options``."""
    checks, layout = structural_checks(cfg, config, world_size)
    gpu = torch.cuda.is_available() or device_memory_gib is not None
    dtype = compute_dtype(cfg, torch.device("cuda" if gpu else "cpu"))
    report = _summary(cfg, config, world_size, layout, dtype)
    if all(c["ok"] for c in checks if c["check"] != "batch split"):
        report |= _sharded_report(cfg, config, layout, dtype, report["batch"]["micro_batches_per_step"], gpu,
                                  device_memory_gib)
        if device_memory_gib is not None:
            checks.append(_memory_check(report["memory_bytes"]["total"], device_memory_gib))
            report["device_memory_gib"] = device_memory_gib
    return report | {"checks": checks, "ok": all(c["ok"] for c in checks)}


def without_tp(cfg: Config, world_size: int, report: dict[str, Any]) -> dict[str, Any] | None:
    """The same run on the same ranks without TP (FSDP over all of them), where the plan (``report``, for a device
    memory) finds a setting for it that fits with headroom and checkpoints no more than the TP run's recommendation:
    where both fit, FSDP alone measured 0.96-1.74x TP's speed (Qwen2-0.5B, Qwen2-1.5B, Llama-3-8B shapes on 2 and 4
    H100s, BENCHMARKS.md), so TP is for what does not fit, and only a bench of the two settles the rest."""
    if not (report.get("mesh") and report["mesh"]["tp"] > 1 and "recommended" in report):
        return None
    parallel = dataclasses.replace(cfg.parallel, tp=1, dp_shard=-1)
    try:
        plain = make_plan(dataclasses.replace(cfg, parallel=parallel), world_size, report["device_memory_gib"])
    except ConfigError:
        return None
    rec, tp_rec = plain.get("recommended"), report["recommended"]
    structural = all(c["ok"] for c in plain["checks"] if c["check"] != "memory")
    if not structural or rec is None or rec["tight"] or (tp_rec is not None and RECOMMEND_ORDER.index(
            rec["activation_checkpointing"]) > RECOMMEND_ORDER.index(tp_rec["activation_checkpointing"])):
        return None
    dp_shard = "" if cfg.parallel.dp_shard == -1 else " --parallel.dp_shard=-1"
    return {"flags": f"--parallel.tp=1{dp_shard} {_setting_flags(rec)}", "total_bytes": rec["total_bytes"],
            "mesh": plain["mesh"]}


def _size(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _shape(shape: list[int]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


_OP_NAMES = {"all_gather_into_tensor": "all-gather", "reduce_scatter_tensor": "reduce-scatter",
             "all_reduce": "all-reduce", "all_to_all_single": "all-to-all", "all_gather": "all-gather",
             "reduce_scatter": "reduce-scatter", "all_reduce_replicas": "all-reduce over replicas"}


def _comm_lines(comm: dict[str, Any]) -> list[str]:
    lines = []
    for kind in ("tp", "cp"):
        if not comm[kind]:
            continue
        layer, name = comm[kind]["per_layer_per_micro_batch"], kind.upper()
        parts = [f"{_OP_NAMES[k]} {v['calls']} calls {_size(v['bytes'])}" for k, v in layer.items() if v["calls"]]
        lines.append(f"  {name} per layer per micro-batch, forward + backward: " + ", ".join(parts))
        step = comm[kind]["per_step_bytes"]
        lines.append(f"  {name} per step, all layers and the top" + (", partial gradients summed" if kind == "tp" else "")
                     + ": "
                     + ", ".join(f"{_OP_NAMES[k]} {_size(v)}" for k, v in step.items() if v))
    lines.append("  FSDP per step: " + ", ".join(f"{_OP_NAMES[k]} {_size(v)}" for k, v in comm["fsdp"].items()))
    return lines


def _header(r: dict[str, Any]) -> list[str]:
    m = r["model"]
    lines = [f"model: {m['preset'] or m['path']} ({m['model_type']}), {m['layers']} layers, hidden {m['hidden_size']}, "
             f"{m['attention_heads']} heads / {m['kv_heads']} KV heads, vocab {m['vocab_size']}, "
             f"{'tied' if m['tied_embeddings'] else 'untied'} embeddings"
             + (f", {r['num_params']:,} parameters" if "num_params" in r else "")]
    if r["mesh"]:
        mesh, b = r["mesh"], r["batch"]
        on = {True: "on", False: "off"}
        sizes = " x ".join(f"{k}={v}" for k, v in mesh.items())
        lines.append(f"mesh: {sizes} = {r['world_size']} devices; sequence parallel {on[r['sequence_parallel']]}, "
                     f"loss parallel {on[r['loss_parallel']]}")
        split = f", each row split over {mesh['cp']} CP ranks" if mesh["cp"] > 1 else ""
        lines.append(f"step: {b['micro_batches_per_step']} micro-batch(es) of {b['micro_batch_size']} x "
                     f"{b['seq_len']} tokens per DP rank{split}; {r['compute_dtype']} compute; activation "
                     f"checkpointing {r['activation_checkpointing']}")
    return lines


def _heads_line(h: dict[str, int]) -> str:
    line = f"attention heads per rank: {h['query_heads_per_rank']} query, {h['kv_heads_per_rank']} KV"
    if "rows_per_rank" in h:
        line += (f", all of them, over the {h['rows_per_rank']} whole rows of each micro-batch the rank holds "
                 "(attention weights replicated over TP ranks, gradients summed once per step)")
    elif h["ranks_per_kv_head"] > 1:
        line += (f"; KV heads replicated: each computed by {h['ranks_per_kv_head']} ranks, each storing "
                 f"1/{h['ranks_per_kv_head']} of its rows (gathered per forward, gradients summed)")
    return line


def _sharding(r: dict[str, Any]) -> list[str]:
    lines = []
    if r["styles"]:
        lines += ["", "tensor-parallel styles (plan registry):"]
        lines += _table([[s["scope"], s["module"], s["class"], s["style"]] for s in r["styles"]])
        lines.append("  " + _heads_line(r["heads"]))
    lines += ["", "parameters (rank 0; layers.* is block 0, the same in every block):"]
    rows = [["name", "count", "global", "local", "placements"]]
    rows += [[p["name"], str(p["count"]), _shape(p["global_shape"]), _shape(p["local_shape"]),
              ", ".join(f"{d}: {x}" for d, x in zip(p["mesh_dims"], p["placements"])) or "plain tensor"]
             for p in r["parameters"]]
    return lines + _table(rows)


def _larger_layout(r: dict[str, Any]) -> str:
    """What to change when no setting fits: more model-parallel ranks (a mixture of experts' experts, most of its
    weights, only more FSDP ranks shard), or narrower weights if they are fp32."""
    narrower = ", or set model.dtype=bfloat16 (bf16 weights and AdamW states)" if r["master_dtype"] == "float32" else ""
    if r["model"]["experts"]:
        return ("raise parallel.dp_shard (the experts are sharded by FSDP only, not over TP ranks), parallel.tp or "
                f"(long sequences) parallel.cp{narrower}")
    return f"raise parallel.tp, parallel.dp_shard or (long sequences) parallel.cp{narrower}"


def _recommendation(r: dict[str, Any]) -> str:
    rec, budget_gib = r["recommended"], r["device_memory_gib"]
    if rec is None:
        return (f"  recommended: nothing fits {budget_gib:g} GiB, even with full checkpointing at micro-batch 1: "
                f"{_larger_layout(r)}")
    fill = (f"tight: above {RECOMMEND_HEADROOM:.0%} of it, the allocator may need more" if rec["tight"]
            else f"within {RECOMMEND_HEADROOM:.0%} of it")
    return f"  recommended for {budget_gib:g} GiB ({fill}): {_setting_flags(rec)} (about {_size(rec['total_bytes'])})"


def _blocks_line(r: dict[str, Any]) -> str:
    reshard, setting, budget = r["reshard_after_forward"], r["reshard_setting"], r.get("device_memory_gib")
    state = "freed after forward, gathered again for backward" if reshard else "kept gathered from forward to backward"
    why = ""
    if setting == "auto":
        why = (f": keeping them {'would not fit' if reshard else 'fits'} within {RECOMMEND_HEADROOM:.0%} "
               f"of {budget:g} GiB" if budget is not None else ": no device memory to plan for")
    return f"  FSDP blocks: {state} (parallel.reshard_after_forward={setting}{why})"


def render(r: dict[str, Any]) -> str:
    """The report as text: model, mesh, styles, parameters, memory, communication, checks."""
    lines = _header(r)
    if "parameters" in r:
        lines += _sharding(r)
        lines += ["", "memory per device (estimate; formulas in shardwise/estimate.py):"]
        mem = r["memory_bytes"]
        lines += _table([[k, _size(v)] for k, v in mem.items() if k not in ("phases", "total")])
        peak = max(mem["phases"], key=mem["phases"].get)
        lines.append(f"  total (peak, at the {peak}): {_size(mem['total'])}; "
                     + ", ".join(f"{k} {_size(v)}" for k, v in mem["phases"].items()))
        if r["reshard_after_forward"] is not None:
            lines.append(_blocks_line(r))
        if r.get("tp_attention_why"):
            how = "per sequence" if r["tp_attention"] == "sequences" else "split by heads"
            lines.append(f"  attention: {how} (parallel.tp_attention=auto: {r['tp_attention_why']})")
        if "recommended" in r:
            lines.append(_recommendation(r))
        if r.get("without_tp"):
            w = r["without_tp"]
            lines.append(f"  without TP it fits too: {w['flags']} (about {_size(w['total_bytes'])}); where both fit, "
                         "FSDP alone ran 0.96-1.74x TP's speed on H100s (BENCHMARKS.md): compare them with shardwise bench")
        lines += ["", "communication per device (ring bytes sent):", *_comm_lines(r["comm_bytes"])]
    lines += ["", "checks:"]
    lines += [f"  {'ok  ' if c['ok'] else 'FAIL'}  {c['check']}" + (f": {c['message']}" if c["message"] else "")
              for c in r["checks"]]
    return "\n".join(lines)


def memory_warning(report: dict[str, Any]) -> str | None:
    """One line when a plan's (``make_plan``) peak estimate for its run exceeds the device, naming the setting the
    plan recommends instead; None when it fits, or with no device to plan for."""
    memory = next((c for c in report["checks"] if c["check"] == "memory"), None)
    if memory is None or memory["ok"]:
        return None
    rec = report["recommended"]
    fix = (f"nothing fits; {_larger_layout(report)}" if rec is None
           else f"shardwise plan recommends {_setting_flags(rec)}")
    return (f"shardwise: warning: this run needs about {_size(report['memory_bytes']['total'])} per device by "
            f"shardwise plan's estimate, more than the {report['device_memory_gib']:.1f} GiB there; {fix}")


def run_plan(cfg: Config, world_size: int, device_memory_gib: float | None, as_json: bool) -> int:
    """Print the plan, with the same run planned without TP beside it (``without_tp``; the launch's own plan leaves
    that out: it would double the time before the workers start); exit code 1 when any check fails."""
    report = make_plan(cfg, world_size, device_memory_gib)
    report["without_tp"] = without_tp(cfg, world_size, report)
    print(json.dumps(report, indent=1) if as_json else render(report), flush=True)
    return 0 if report["ok"] else 1
