"""Device-call experiment only (not the product): SW_KEEP_PEAK=1 leaves inductor's peak-memory reordering on after
shardwise.overlap.install turns it off."""
import os

if os.environ.get("SW_KEEP_PEAK") == "1":
    import shardwise.overlap as _o

    _install = _o.install

    def _keep_peak() -> None:
        _install()
        import torch._inductor.config as _c
        _c.reorder_for_peak_memory = True

    _o.install = _keep_peak
