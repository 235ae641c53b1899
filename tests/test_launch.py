"""``shardwise.launch``: the flags handed to torchrun fit the torch that runs them."""

from __future__ import annotations

import pytest
import torch.distributed.run

from shardwise import launch


@pytest.mark.parametrize("has_flag", [True, False])
def test_shutdown_timeout_reaches_torchrun_of_any_version(monkeypatch, has_flag):
    """torch 2.13's torchrun takes --shutdown-timeout; 2.11's (the GPU image's) refuses it, so it gets the
    environment variable the flag defaults to instead, and the launch goes ahead."""
    seen: list[list[str]] = []
    monkeypatch.setattr(torch.distributed.run, "main", seen.append)
    monkeypatch.setattr(launch, "_torchrun_has", lambda flag: has_flag or flag != "--shutdown-timeout")
    monkeypatch.delenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", raising=False)
    assert launch.launch("some.module", ["--x=1"], 2, shutdown_timeout_s=77) == 0
    (args,) = seen
    assert ("--shutdown-timeout=77" in args) == has_flag
    assert (launch.os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT") == "77") == (not has_flag)
    assert args[-3:] == ["--module", "some.module", "--x=1"] and "--nproc-per-node=2" in args


def test_torchrun_flags_are_read_from_its_parser():
    assert launch._torchrun_has("--nproc-per-node") and not launch._torchrun_has("--no-such-flag")
