"""Device-call experiment only (not the product): inductor's compute/communication overlap passes, by environment."""
import os

_mode = os.environ.get("SW_OVERLAP")
if _mode:
    import torch._inductor.config as _c

    if _mode == "reorder":
        _c.reorder_for_compute_comm_overlap = True
        _c.reorder_for_compute_comm_overlap_passes = ["reorder_compute_for_overlap", "sink_waits", "raise_comms"]
    elif _mode == "schedule":
        _c.aten_distributed_optimizations.enable_overlap_scheduling = True
