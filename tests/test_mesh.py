from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from shardwise import mesh
from shardwise.config import ConfigError, ParallelConfig
from shardwise.mesh import resolve_layout


def test_dp_shard_takes_the_rest():
    layout = resolve_layout(ParallelConfig(dp_replicate=2, tp=2), 8)
    assert (layout.dp_replicate, layout.dp_shard, layout.cp, layout.tp, layout.dp) == (2, 2, 1, 2, 4)
    layout = resolve_layout(ParallelConfig(cp=2, tp=2), 8)
    assert (layout.dp_shard, layout.dp, layout.dp_cp) == (2, 2, 4)


def test_product_must_match_world():
    with pytest.raises(ConfigError, match=r"2\*3\*1\*2 = 12 but the world size is 8"):
        resolve_layout(ParallelConfig(dp_replicate=2, dp_shard=3, tp=2), 8)
    with pytest.raises(ConfigError, match="not divisible"):
        resolve_layout(ParallelConfig(tp=3), 4)
    with pytest.raises(ConfigError, match=r"parallel.dp_replicate\*cp\*tp=6; set parallel.tp and parallel.cp"):
        resolve_layout(ParallelConfig(cp=3, tp=2), 8)


@pytest.mark.parametrize("cp,tp,multiple", [(1, 1, 1), (1, 4, 4), (2, 1, 4), (2, 2, 8), (4, 2, 16)])
def test_sequences_pad_to_equal_chunks_of_equal_shards(cp, tp, multiple):
    """Without CP the TP shards only; with CP, 2*cp chunks of tp shards each."""
    assert resolve_layout(ParallelConfig(cp=cp, tp=tp), cp * tp).seq_multiple == multiple


@pytest.mark.parametrize("given,expected", [(None, mesh.CUDA_ALLOC_CONF), ("expandable_segments:False", None)])
def test_gpu_workers_get_expandable_segments_unless_told_otherwise(monkeypatch, given, expected):
    """On a GPU (faked) a worker sets the allocator's expandable segments before CUDA allocates; a user's own
    PYTORCH_CUDA_ALLOC_CONF stays as it is."""
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", given or "")  # restored after the test, whatever it sets
    if given is None:
        monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    monkeypatch.setattr(mesh, "device_type", lambda: "cuda")
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    assert mesh.init_distributed(60) == torch.device("cuda", 0)
    assert mesh.os.environ["PYTORCH_CUDA_ALLOC_CONF"] == (expected or given)
