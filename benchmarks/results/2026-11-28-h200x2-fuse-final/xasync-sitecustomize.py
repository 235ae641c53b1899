"""Experiment (session 26, not on main): async TP only where the matmul can hide its collective.

With X_ASYNC_MIN=N set, inductor's micro-pipeline TP pass fuses an all-gather with its consumer matmuls only when
their output columns sum to >= N, and a reduce-scatter with its producer matmul only when that matmul's contracted
dim is >= N: flops per byte moved >= N, so the half of the matmul that needs no peer data lasts as long as the
transfer (2 x peak flop/s / link bytes/s ~ 2 x 700e12 / 450e9 ~ 3100 on H100 NVLink). Each decision is printed."""
import os
import sys

if os.environ.get("X_ASYNC_MIN"):
    import torch._inductor.fx_passes.micro_pipeline_tp as m

    MIN = int(os.environ["X_ASYNC_MIN"])

    def _shape(node):
        return tuple(m._get_tensor(node).shape)

    def _say(kind, shape, dim, fuse):
        if os.environ.get("RANK", "0") == "0":
            print(f"[x-async] {kind} {shape} dim {dim}: {'fused' if fuse else 'plain'}", file=sys.stderr, flush=True)

    def fuse_all_gather_matmul(ag, _orig=m.fuse_all_gather_matmul):
        mms = [mm for mm in m._find_consumer_matmuls(ag.res_node) if ag.res_node not in mm.arg_ancestor_nodes]
        cols = sum(_shape(mm.B_node)[-1] for mm in mms)
        _say("all-gather", _shape(ag.res_node), cols, cols >= MIN)
        if cols >= MIN:
            _orig(ag)

    def fuse_matmul_reduce_scatter(rs, _orig=m.fuse_matmul_reduce_scatter):
        mm = m._find_producer_matmul(rs.input_node)
        k = _shape(mm.A_node)[-1] if mm is not None else 0
        _say("reduce-scatter", _shape(rs.input_node), k, k >= MIN)
        if k >= MIN:
            _orig(rs)

    m.fuse_all_gather_matmul = fuse_all_gather_matmul
    m.fuse_matmul_reduce_scatter = fuse_matmul_reduce_scatter
