import os, sys
if os.environ.get("X_DUMP"):
    import torch
    import torch._inductor.config as ic
    from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
    import torch._inductor.fx_passes.micro_pipeline_tp as m

    class Dump(CustomGraphPass):
        def __call__(self, graph):
            if os.environ.get("RANK", "0") != "0":
                return
            bw = m._is_backward(graph)
            coll = [n for n in graph.nodes if "c10d_functional" in str(n.target) and "wait" not in str(n.target)]
            ags = m.find_all_gather_patterns(graph)
            rss = m.find_reduce_scatter_patterns(graph)
            print(f"[x-dump] {'backward' if bw else 'forward'}: {len(coll)} collectives, {len(ags)} AG patterns, {len(rss)} RS patterns", file=sys.stderr)
            unexp = m._get_unexposed_collectives(graph)
            for a in ags:
                mms = m._find_consumer_matmuls(a.res_node)
                print(f"[x-dump]   AG pattern res {tuple(a.res_node.meta['val'].shape)} consumers {[tuple(mm.B_node.meta['val'].shape) for mm in mms]} users {[str(u.target) for u in a.res_node.users]} unexposed={a.ag_node in unexp}", file=sys.stderr)
            for r in rss:
                mm = m._find_producer_matmul(r.input_node)
                print(f"[x-dump]   RS pattern input {r.input_node.target} producer {None if mm is None else tuple(mm.A_node.meta['val'].shape)} unexposed={r.reduce_scatter_node in unexp}", file=sys.stderr)
            for n in coll:
                users = [str(u.target) for u in n.users]
                print(f"[x-dump]   {n.target} {tuple(n.meta['val'].shape) if 'val' in n.meta else ''} args={[str(a) for a in n.args[1:]]}", file=sys.stderr)
            if os.environ.get("X_DUMP") == "graph":
                print(graph, file=sys.stderr)
        def uuid(self):
            return "xdump"
    ic.post_grad_custom_post_pass = Dump()
