"""Loading a checkpoint never runs code from it: metadata and non-tensor values must be plain data."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from shardwise import safeload
from shardwise.checkpoint import export
from shardwise.config import ConfigError
from shardwise.manifest import describe

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


class Payload:
    """Unpickling this creates ``path``: what a malicious checkpoint would do instead."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.mknod, (str(self.path),)


def test_malicious_metadata_is_refused_unread(uninterrupted, tmp_path):
    ckpt = tmp_path / "step-3"
    shutil.copytree(uninterrupted / "checkpoints" / "step-3", ckpt)
    (ckpt / ".metadata").write_bytes(pickle.dumps(Payload(tmp_path / "pwned")))
    meta = json.loads((ckpt / "shardwise.json").read_text())  # whoever writes the files can forge the manifest
    meta["files"].update(describe(ckpt, [".metadata"]))
    (ckpt / "shardwise.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"its \.metadata is not DCP checkpoint metadata \(posix\.mknod is not "):
        export(ckpt, tmp_path / "hf")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "hf").exists()


def test_non_tensor_values_must_be_plain_data(tmp_path):
    dcp.save({"weight": torch.ones(2), "step": Payload(tmp_path / "pwned")}, checkpoint_id=tmp_path / "ckpt",
             no_dist=True)
    state = {"weight": torch.zeros(2), "step": 0}
    with pytest.raises(ConfigError, match=r"checkpoint value 'step' is not plain data; refusing to load it"):
        safeload.load(state, tmp_path / "ckpt", no_dist=True)
    assert not (tmp_path / "pwned").exists()
    dcp.save({"weight": torch.ones(2), "step": 7}, checkpoint_id=tmp_path / "plain", no_dist=True)
    safeload.load(state, tmp_path / "plain", no_dist=True)
    assert state["step"] == 7 and state["weight"].equal(torch.ones(2))
