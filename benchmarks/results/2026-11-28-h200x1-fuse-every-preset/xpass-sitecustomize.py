"""Experiment hook (session 29, not on main): X_NOFUSE=1 switches shardwise.fuse's pass off; X_FORCEBIAS=1 makes it
take async TP's form for biased projections (mm, the biases added after) without async TP; each graph's merge count
is printed to stderr ("[fuse] merged N")."""
import os
import sys
import types

import shardwise.fuse as _f

if os.environ.get("X_NOFUSE"):
    _f.SiblingMatmuls.__call__ = lambda self, graph: None
if os.environ.get("X_FORCEBIAS"):
    _f.inductor_config = types.SimpleNamespace(_micro_pipeline_tp=True)
_orig = _f.fuse_siblings


def _counted(graph, below=_f.FUSE_BELOW):
    n = _orig(graph, below)
    print(f"[fuse] merged {n}", file=sys.stderr, flush=True)
    return n


_f.fuse_siblings = _counted
