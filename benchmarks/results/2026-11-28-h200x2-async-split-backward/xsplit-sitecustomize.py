"""Experiment (session 32, not on main): async TP splitting the collectives its rule leaves to the reorder passes.

Inductor's micro-pipeline pass does not split a collective that its reorder passes could hide beside an independent
matmul (``_get_unexposed_collectives``): with ``shardwise.fuse`` the backward's input-gradient reduce-scatters have
one producing matmul the pass matches, but the weight-gradient matmuls beside them keep them whole (session 28).
X_SPLIT=all: that rule off, the reorder passes on (everything the pass matches is split, the rest reordered);
X_SPLIT=noreorder: the reorder passes off too (the split alone). X_LOG=1: each decision from rank 0."""
import os
import sys

MODE, LOG = os.environ.get("X_SPLIT", ""), os.environ.get("X_LOG")
if MODE or LOG:
    import torch._inductor.fx_passes.micro_pipeline_tp as m

    if MODE in ("all", "noreorder"):
        m._get_unexposed_collectives = lambda graph: []
    if MODE == "noreorder":
        import torch.distributed._symmetric_memory as symm

        def enable_symm_mem_for_group(name, _orig=symm.enable_symm_mem_for_group):
            import torch._inductor.config as config
            config.reorder_for_compute_comm_overlap = False  # set by shardwise.parallelize.apply_async_tp just before
            return _orig(name)

        symm.enable_symm_mem_for_group = enable_symm_mem_for_group

    def _fused(graph):
        return sum("symm_mem" in str(n.target) for n in graph.nodes)

    def _logged(name):
        orig = getattr(m, name)

        def fuse(match):
            node = getattr(match, "ag_node", None) or match.reduce_scatter_node
            graph = node.graph
            shape, backward, before = tuple(m._get_tensor(node.args[0]).shape), m._is_backward(graph), _fused(graph)
            orig(match)
            if LOG and os.environ.get("RANK", "0") == "0":
                print(f"[x-split] {'backward' if backward else 'forward'} {name} {shape}: "
                      f"{'split' if _fused(graph) > before else 'whole'}", file=sys.stderr, flush=True)
        return fuse

    m.fuse_all_gather_matmul = _logged("fuse_all_gather_matmul")
    m.fuse_matmul_reduce_scatter = _logged("fuse_matmul_reduce_scatter")
