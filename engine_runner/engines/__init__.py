"""Engines the ``model_bench`` job can drive (the contract: :mod:`engine_runner.engines.base`).

Each engine lives in ``engine_runner/engines/<name>.py`` and exposes a class named ``Engine``
implementing the protocol; the module is imported only when that engine is asked for, so a machine
without TensorRT still lists and runs ONNX Runtime.

Other engine modules live here too without being ``BenchEngine`` s (``vllm_server``: the vLLM server
lifecycle used by the ``llm_serve`` job).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from profiles.errors import InputError

if TYPE_CHECKING:
    from engine_runner.engines.base import BenchEngine

#: Engine name (``BenchSpec.engine``) -> module under ``engine_runner.engines``.
ENGINE_MODULES: dict[str, str] = {
    "onnxruntime": "engine_runner.engines.onnxruntime",
    "tensorrt": "engine_runner.engines.tensorrt",
    "torch": "engine_runner.engines.torch_engine",
}


def get_engine_impl(name: str, **options: Any) -> BenchEngine:
    """A new engine instance for ``name`` (``module.Engine(**options)``), imported lazily.

    Raises:
        InputError: unknown engine name, or no implementation of it in this checkout.
    """
    try:
        module = ENGINE_MODULES[name]
    except KeyError:
        raise InputError(f"--engine {name!r}: unknown engine; known: {sorted(ENGINE_MODULES)}") from None
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise InputError(f"--engine {name!r}: no engine implementation ({module}) in this installation") from None
        raise
    return mod.Engine(**options)
