"""CPU smoke runs of ``benchmarks/torchtitan_baseline.py`` only; never on the GPU machine.

Put this folder on PYTHONPATH (Python imports ``sitecustomize`` at start-up, in torchrun's workers
too) and set ``TITAN_CPU_SHIM=1``; then TorchTitan 0.2.2 trains on CPU/gloo:

    PYTHONPATH=$PWD/src:/tmp/site:$PWD/benchmarks/torchtitan_cpu_shim TITAN_CPU_SHIM=1 \\
        python3 benchmarks/torchtitan_baseline.py --nproc 2 --shapes tiny-llama --seq-len 64 --local-batch 2 \\
        --global-batch 8 --ac full --warmup 1 --steps 3 --out /tmp/titan-cpu.json

What it changes, all for the CPU's sake:
1. TorchTitan imports triton at import time for MoE kernels that the dense llama3 never runs; a
   CPU machine has no triton, so that one module is loaded against a throwaway stub, which is
   then dropped so torch itself still sees no triton.
2. TorchTitan picks device "cuda" when no accelerator is found; it is made to pick "cpu", and
   ``torch.cpu`` gets the few ``torch.cuda``-style calls TorchTitan makes (memory stats: none).
3. Gloo has no ``ReduceOp.PREMUL_SUM``, which FSDP2 uses once TorchTitan sets its gradient divide
   factor to 1; FSDP keeps its own division instead (gradients scaled by 1/world; a smoke run
   does not care).
Compiled tensor-parallel blocks do not run on torch 2.13's CPU build (a DTensor error in the
backward that is not TorchTitan's); everything else does.
"""

import importlib.util
import os
import sys
import types

_spec = importlib.util.find_spec("torchtitan") if os.environ.get("TITAN_CPU_SHIM") == "1" else None
if _spec is not None:
    import torch
    import torch._utils

    stub, lang = types.ModuleType("triton"), types.ModuleType("triton.language")
    stub.jit = lambda fn=None, **kw: fn if fn is not None else (lambda f: f)
    stub.language, lang.constexpr = lang, object
    sys.modules.update({"triton": stub, "triton.language": lang})
    kspec = importlib.util.spec_from_file_location(
        "torchtitan.models.moe.kernels", _spec.submodule_search_locations[0] + "/models/moe/kernels.py")
    kernels = importlib.util.module_from_spec(kspec)
    kspec.loader.exec_module(kernels)
    sys.modules["torchtitan.models.moe.kernels"] = kernels
    del sys.modules["triton"], sys.modules["triton.language"]

    cpu = torch.cpu
    cpu.get_device_name = lambda *a, **k: "CPU"
    cpu.get_device_properties = lambda *a, **k: types.SimpleNamespace(total_memory=24 << 30)
    cpu.reset_peak_memory_stats = lambda *a, **k: None
    cpu.empty_cache = lambda *a, **k: None
    cpu.memory_stats = lambda *a, **k: {}
    cpu.current_device = lambda: 0  # TorchTitan passes it to barrier() as a device id
    available = torch._utils._get_available_device_type
    torch._utils._get_available_device_type = lambda: "cpu"
    import torchtitan.models.llama3.infra.parallelize as llama3_parallelize  # fixes TorchTitan's device_type

    torch._utils._get_available_device_type = available
    llama3_parallelize.disable_fsdp_gradient_division = lambda model: None
