from __future__ import annotations

import pytest

from shardwise.config import ConfigError, ParallelConfig
from shardwise.mesh import resolve_layout


def test_dp_shard_takes_the_rest():
    layout = resolve_layout(ParallelConfig(dp_replicate=2, tp=2), 8)
    assert (layout.dp_replicate, layout.dp_shard, layout.tp, layout.dp) == (2, 2, 2, 4)


def test_product_must_match_world():
    with pytest.raises(ConfigError, match=r"2\*3\*2 = 12 but the world size is 8"):
        resolve_layout(ParallelConfig(dp_replicate=2, dp_shard=3, tp=2), 8)
    with pytest.raises(ConfigError, match="not divisible"):
        resolve_layout(ParallelConfig(tp=3), 4)
