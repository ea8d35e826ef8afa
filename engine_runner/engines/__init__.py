"""Engines the ``model_bench`` job can drive (the contract: :mod:`engine_runner.engines.base`).

Each engine lives in ``engine_runner/engines/<name>.py`` (torch: ``torch_engine.py``, so that no module of
ours is named like the ``torch`` package, which a script run from this folder would then shadow) and exposes a class named ``Engine``
implementing the protocol; the module is imported only when that engine is asked for, so a machine
without TensorRT still lists and runs ONNX Runtime.

Other engine modules live here too without being ``BenchEngine`` s (``vllm_server``: the vLLM server
lifecycle used by the ``llm_serve`` job).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from profiles.catalog import resolve_engine
from profiles.errors import EngineUnavailableError

if TYPE_CHECKING:
    from engine_runner.engines.base import BenchEngine

#: Engine name (``profiles.catalog.engines()``, ``BenchSpec.engine``) -> module under ``engine_runner.engines``
#: (tests/unit/test_engine_contract.py checks the keys equal the catalogue's engines).
ENGINE_MODULES: dict[str, str] = {
    "onnxruntime": "engine_runner.engines.onnxruntime",
    "tensorrt": "engine_runner.engines.tensorrt",
    "torch": "engine_runner.engines.torch_engine",
}


def get_engine_impl(name: str, **options: Any) -> BenchEngine:
    """A new engine instance for ``name`` (any spelling ``profiles.catalog.resolve_engine`` accepts:
    ``ORT``, ``trt``, ``pytorch``...): ``module.Engine(**options)``, imported lazily.

    Raises:
        InputError: ``--engine``: not an engine of the catalogue (lists the choices).
        EngineUnavailableError: a catalogued engine whose module is not in this installation.
    """
    canonical = resolve_engine(name)
    module = ENGINE_MODULES[canonical]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise EngineUnavailableError(f"--engine {canonical}: the {canonical} engine is not implemented in this "
                                         f"installation ({module} is missing)") from None
        raise
    return mod.Engine(**options)
