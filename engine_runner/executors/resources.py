"""What a job asks Ray for: pure functions (no Ray import), so they are tested without a cluster.

Rules (:func:`job_resources`):

- A benchmark (``model_bench``, ``llm_serve``, ``clock_check``) takes whole GPUs of one node, so two
  benchmarks never share a GPU: ``num_gpus`` = the spec's ``tensor_parallel_size`` for ``llm_serve``
  (vLLM's tensor parallelism needs that many GPUs of one node), else 1. This holds for a CPU-device
  benchmark too: it is placed on a GPU slot of its node so that it does not run beside another
  benchmark on that node's CPUs.
- Other jobs (``export``) take no GPU and one CPU.
- An accelerator type (``spec["gpu_type"]``, else the dispatcher's ``--gpu-type``) adds the custom
  resource ``{"accelerator_type:<T>": 0.001}``, which only nodes started with that type carry (Ray sets it
  itself on GPU nodes it detects; ``ray start --resources='{"accelerator_type:H100": 1}'`` sets it by
  hand). 0.001 so that up to 1000 jobs can hold it at once: the GPUs, not this marker, bound them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from profiles.errors import InputError
from profiles.placement import normalize_gpu_type

__all__ = ["ACCELERATOR_SHARE", "BENCHMARK_KINDS", "ResourceRequest", "cluster_lacks", "job_resources",
           "normalize_gpu_type"]

#: Job kinds that measure something and therefore own their GPU(s).
BENCHMARK_KINDS = frozenset({"model_bench", "llm_serve", "clock_check"})

#: Share of the ``accelerator_type:<T>`` resource one job takes.
ACCELERATOR_SHARE = 0.001


@dataclass(frozen=True)
class ResourceRequest:
    """Arguments of ``remote_fn.options(...)``: ``num_gpus``, ``num_cpus``, custom ``resources``."""

    num_gpus: float
    num_cpus: float
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def accelerator_type(self) -> str | None:
        """The accelerator type asked for, or None."""
        for k in self.resources:
            if k.startswith("accelerator_type:"):
                return k.split(":", 1)[1]
        return None

    def describe(self) -> str:
        """``"1 GPU of type H100, 1 CPU"``-style text for job events and errors."""
        t = self.accelerator_type
        gpus = f"{self.num_gpus:g} GPU" + ("s" if self.num_gpus != 1 else "") + (f" of type {t}" if t else "")
        return f"{gpus}, {self.num_cpus:g} CPU" if self.num_gpus else f"{self.num_cpus:g} CPU" + (f" on a {t} node" if t else "")


def job_resources(kind: str, spec: dict[str, Any] | None, *, default_gpu_type: str | None = None,
                  num_cpus: float = 1.0) -> ResourceRequest:
    """The Ray resources of one job (see the module doc for the rules).

    Raises:
        InputError: a bad ``gpu_type`` or ``tensor_parallel_size`` in the spec.
    """
    spec = spec or {}
    gpu_type = normalize_gpu_type(spec.get("gpu_type")) or normalize_gpu_type(default_gpu_type)
    if kind in BENCHMARK_KINDS:
        gpus: float = 1
        if kind == "llm_serve":
            tp = spec.get("tensor_parallel_size", (spec.get("server") or {}).get("tensor_parallel_size"))
            tp = 1 if tp is None else tp
            if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
                raise InputError(f"tensor_parallel_size must be a positive integer, got {tp!r}")
            gpus = tp
    else:
        gpus = 0
    resources = {f"accelerator_type:{gpu_type}": ACCELERATOR_SHARE} if gpu_type else {}
    return ResourceRequest(num_gpus=gpus, num_cpus=num_cpus, resources=resources)


def cluster_lacks(req: ResourceRequest, cluster_resources: dict[str, float]) -> str | None:
    """Why no node of a cluster with these total resources (``ray.cluster_resources()``) can ever run
    ``req``; None when some node may. Checks totals only (a node's share is checked by Ray)."""
    t = req.accelerator_type
    if t and f"accelerator_type:{t}" not in cluster_resources:
        have = sorted(k.split(":", 1)[1] for k in cluster_resources if k.startswith("accelerator_type:"))
        return (f"no node of the Ray cluster has accelerator type {t} (types present: "
                f"{', '.join(have) if have else 'none'})")
    if req.num_gpus and cluster_resources.get("GPU", 0) < req.num_gpus:
        return f"the Ray cluster has {cluster_resources.get('GPU', 0):g} GPU(s) in all; the job needs {req.num_gpus:g}"
    return None
