"""Device mesh (dp_replicate, dp_shard, cp, tp) from the config and the world size."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from shardwise.config import ConfigError, ParallelConfig

PG_TIMEOUT_MARGIN_S = 60


TP_DIM = "tp"  # the tensor-parallel mesh dimension's name
CP_DIM = "cp"  # the context-parallel one


@dataclass
class Layout:
    """Resolved sizes of the four mesh dimensions, outermost first."""

    dp_replicate: int
    dp_shard: int
    cp: int
    tp: int

    @property
    def dp(self) -> int:
        """Data-parallel ranks: each takes its own samples."""
        return self.dp_replicate * self.dp_shard

    @property
    def dp_cp(self) -> int:
        """Ranks that hold different tokens of a step (its samples, or pieces of them): FSDP shards over them
        (with replicas) and their gradients and losses are summed."""
        return self.dp * self.cp

    @property
    def world_size(self) -> int:
        return self.dp_cp * self.tp

    @property
    def seq_multiple(self) -> int:
        """What a row's length is a multiple of: ``tp`` even token shards (padded to it), and with context
        parallelism ``2·cp`` equal chunks (``shardwise.cp``) of ``tp`` shards each (``train.seq_len`` must be)."""
        return self.tp if self.cp == 1 else 2 * self.cp * self.tp

    def sizes(self) -> dict[str, int]:
        """The mesh as run.json, checkpoints and ``shardwise plan`` record it."""
        return {"dp_replicate": self.dp_replicate, "dp_shard": self.dp_shard, CP_DIM: self.cp, TP_DIM: self.tp}


def resolve_layout(p: ParallelConfig, world_size: int) -> Layout:
    """Fill ``dp_shard=-1`` with the rest of the world and check the product."""
    rest = p.dp_replicate * p.cp * p.tp
    if p.dp_shard == -1:
        if world_size % rest:
            raise ConfigError(
                f"world size {world_size} is not divisible by parallel.dp_replicate*cp*tp={rest}; "
                f"set parallel.tp and parallel.cp to divisors of {world_size}"
            )
        return Layout(p.dp_replicate, world_size // rest, p.cp, p.tp)
    layout = Layout(p.dp_replicate, p.dp_shard, p.cp, p.tp)
    if layout.world_size != world_size:
        raise ConfigError(
            f"parallel.dp_replicate*dp_shard*cp*tp = {p.dp_replicate}*{p.dp_shard}*{p.cp}*{p.tp} = "
            f"{layout.world_size} but the world size is {world_size}; set parallel.dp_shard=-1 to use the rest"
        )
    return layout


CUDA_ALLOC_CONF = "expandable_segments:True"


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def init_distributed(timeout_s: int) -> torch.device:
    """Join the process group torchrun set up: nccl on GPUs, gloo on CPU.

    Its collectives give up after ``timeout_s`` (``parallel.timeout_s``) plus ``PG_TIMEOUT_MARGIN_S``:
    inside the training loop ``faults.Watchdog`` reports a hung step first, naming the rank and the
    step; the process group's own timeout ends waits outside it (e.g. for another rank's tokenization).

    On GPUs the caching allocator gets expandable segments unless ``PYTORCH_CUDA_ALLOC_CONF`` says
    otherwise (``CUDA_ALLOC_CONF``): long sequences allocate logits of tens of GiB, and with fixed
    segments a Llama-3.1-8B step at 128k tokens on dp_shard=2 ran out of memory on 2×H200 with 18.7
    GiB reserved but unusable, and fit with them (123.6 GiB; ``2026-11-25-h200x2-cp-flash-b``/``-c``).
    """
    if device_type() == "cuda":
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", CUDA_ALLOC_CONF)  # read when CUDA first allocates
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        _warn_shared_store()
        dist.init_process_group(backend=backend, device_id=device if backend == "nccl" else None,
                                timeout=timedelta(seconds=timeout_s + PG_TIMEOUT_MARGIN_S))
    return device


def _warn_shared_store() -> None:
    """torchrun shares its TCPStore with the workers and keeps it across restarts, so a restarted group can
    read the addresses its predecessor left there and fail to connect (pytorch/pytorch#135712)."""
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if restarts and shared and os.environ.get("RANK") == "0" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
        print("shardwise: warning: torchrun --max-restarts with its shared TCPStore can fail to reconnect a restarted "
              "group (pytorch/pytorch#135712); run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1",
              file=sys.stderr, flush=True)


@dataclass
class Meshes:
    """The 4D mesh and the sub-meshes each part of the trainer uses."""

    world: DeviceMesh
    dp: DeviceMesh  # replicate x shard flattened: which samples a rank takes
    dp_cp: DeviceMesh  # replicate x shard x cp flattened: token count and loss reduction
    fsdp: DeviceMesh  # 1D (dp_shard x cp, flattened) for FSDP, 2D (dp_replicate, dp_shard x cp) for HSDP
    cp: DeviceMesh
    tp: DeviceMesh


def build_mesh(layout: Layout, device: str | None = None) -> Meshes:
    """The meshes on this machine's device type, or on ``device`` (``shardwise plan`` uses "cpu").

    As in TorchTitan, FSDP shards over ``dp_shard x cp``: CP ranks hold the same parameters and
    compute gradients from different tokens, which FSDP's reduce-scatter sums like those of DP ranks.
    Without CP no flattened copies of the DP meshes are made (each would be another process group).
    """
    sizes = layout.sizes()  # named as the mesh dimensions
    world = init_device_mesh(device or device_type(), tuple(sizes.values()), mesh_dim_names=tuple(sizes))
    dp = world["dp_replicate", "dp_shard"]._flatten("dp")
    if layout.cp == 1:
        dp_cp, shard, shard_dim = dp, world["dp_shard"], "dp_shard"
    else:
        dp_cp = world["dp_replicate", "dp_shard", CP_DIM]._flatten("dp_cp")
        shard, shard_dim = world["dp_shard", CP_DIM]._flatten("dp_shard_cp"), "dp_shard_cp"
    fsdp = world["dp_replicate", shard_dim] if layout.dp_replicate > 1 else shard
    return Meshes(world, dp, dp_cp, fsdp, world[CP_DIM], world[TP_DIM])
