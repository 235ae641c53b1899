"""Experiment (session 29, not on main): with X_OLDBIAS=1, shardwise.fuse merges biased projections as call 118's
tree did (one addmm, reshaped after), which inductor on GPUs turns into mm + add *before* the reshape, hiding the
matmul from the async-TP pass; without it, main's form (reshape -> mm -> reshape, the biases added after). Also runs
.carry/xdiag's hooks (X_ASYNC_MIN, X_DUMP)."""
import os
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
exec(compile(open(os.path.join(_here, "xdiag", "sitecustomize.py")).read(), "xdiag", "exec"))
if os.environ.get("X_OLDBIAS"):
    import shardwise.fuse as _f

    _new = _f._Rewriter._projection

    def _old(self, shared, weights, bias):
        if bias is None:
            return _new(self, shared, weights, None)
        fused = self.call(_f.ADDMM, bias, shared, weights)
        base = shared.args[0] if shared.target in _f.VIEWS else None
        if _f._val(base) is None or _f._val(base).ndim < 3 or _f._val(base).shape[-1] != _f._val(shared).shape[-1]:
            return fused
        return self.call(_f.aten.reshape.default, fused, [*_f._val(base).shape[:-1], _f._val(fused).shape[-1]])

    _f._Rewriter._projection = _old
if os.environ.get("X_ALLEXPOSED"):  # the async-TP pass decomposes every collective it matches, also those inductor
    # judges hideable by simple overlap (the backward's merged input-gradient reduce-scatter)
    import torch._inductor.fx_passes.micro_pipeline_tp as _m

    _m._get_unexposed_collectives = lambda graph: set()
