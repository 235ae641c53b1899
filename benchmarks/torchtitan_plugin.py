"""Imported inside TorchTitan's own trainer processes by ``benchmarks/torchtitan_baseline.py``.

TorchTitan imports this module (``experimental.custom_import``) before it looks up the model
flavor, so what it does here is in place for the run:

* registers the llama3 flavor ``shardwise`` with the shapes that the wrapper passes as JSON in
  ``SHARDWISE_TITAN_FLAVOR`` (a shardwise preset's sizes in TorchTitan's ``TransformerModelArgs``);
* with ``parallelism.enable_async_tensor_parallel``, also enables symmetric memory on the TP
  group. TorchTitan 0.2.2 only sets inductor's ``_micro_pipeline_tp``; torch 2.11's
  micro-pipeline pass skips every group not registered through ``enable_symm_mem_for_group``,
  so without this the "async TP" run would be plain TP. TorchTitan's later fix (upstream commit
  737594746, "fix async tp and move it into compile") makes the same call on the TP group.

Nothing here changes how TorchTitan builds, parallelizes or trains the model otherwise.
"""

from __future__ import annotations

import json
import os

import torchtitan.models.llama3.infra.parallelize as llama3_parallelize
from torch.distributed.device_mesh import DeviceMesh
from torchtitan.config import JobConfig
from torchtitan.models.llama3 import TransformerModelArgs, llama3_args

FLAVOR = "shardwise"
FLAVOR_ENV = "SHARDWISE_TITAN_FLAVOR"

if FLAVOR_ENV in os.environ:
    llama3_args[FLAVOR] = TransformerModelArgs(**json.loads(os.environ[FLAVOR_ENV]))

_enable_async_tp = llama3_parallelize.maybe_enable_async_tp


def _enable_async_tp_with_symm_mem(job_config: JobConfig, tp_mesh: DeviceMesh) -> None:
    _enable_async_tp(job_config, tp_mesh)
    if job_config.parallelism.enable_async_tensor_parallel:
        import warnings

        from torch.distributed._symmetric_memory import enable_symm_mem_for_group

        with warnings.catch_warnings():  # torch 2.11 marks it deprecated, yet its pass still needs it
            warnings.simplefilter("ignore", FutureWarning)
            enable_symm_mem_for_group(tp_mesh.get_group().group_name)


llama3_parallelize.maybe_enable_async_tp = _enable_async_tp_with_symm_mem
