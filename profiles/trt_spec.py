"""TensorRT build/run options (pydantic) and detection of a usable TensorRT route.

``TensorRTOptions`` is what ``BenchSpec.tensorrt`` holds for ``engine="tensorrt"``; every field has
a unit in its name and a bound, so a bad form field or CLI flag is refused with the field's name
(use :func:`parse_tensorrt_options`).

:func:`detect_tensorrt` picks the route EngineScope uses to build and run engines:

1. ``"trtexec"``: the ``trtexec`` executable, from ``$ENGINESCOPE_TRTEXEC`` or ``PATH``;
2. ``"python"``: the ``tensorrt`` Python module (found with ``importlib.util.find_spec``, not imported);
3. ``None``: neither; ``reason`` says why and ``install_hint`` how to get one.

No subprocess is started here (the TensorRT version is read by ``engine_runner`` when it runs).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from profiles.errors import InputError
from profiles.specs import validate_spec

#: How to get TensorRT, shown wherever the route is unavailable.
INSTALL_HINT = (
    "On an NVIDIA GPU machine: `pip install tensorrt` (TensorRT 10/11 wheels for CUDA 12/13, gives the "
    "Python route), or run inside an NGC container (`docker run --gpus all -it nvcr.io/nvidia/tensorrt:<yy.mm>-py3`, "
    "which ships trtexec at /usr/src/tensorrt/bin/trtexec; set ENGINESCOPE_TRTEXEC to it or put it on PATH)."
)

Route = Literal["trtexec", "python"]

MIB = 1 << 20


class ShapeRange(BaseModel):
    """Optimization-profile range of one input: full shapes ``min`` <= ``opt`` <= ``max`` (per dim)."""

    model_config = ConfigDict(extra="forbid")

    min: list[int] = Field(min_length=1)
    opt: list[int] = Field(min_length=1)
    max: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError(f"min/opt/max ranks differ: {self.min}, {self.opt}, {self.max}")
        for i, (lo, mid, hi) in enumerate(zip(self.min, self.opt, self.max, strict=True)):
            if lo < 0 or not lo <= mid <= hi:
                raise ValueError(f"dim {i}: need 0 <= min <= opt <= max, got {lo}, {mid}, {hi}")
        return self


class TensorRTOptions(BaseModel):
    """Options of a TensorRT engine build and its timed run (``BenchSpec.tensorrt``).

    Build options (part of the engine cache key):
        builder_optimization_level: 0..5 (trtexec ``--builderOptimizationLevel``, TRT >= 8.6; 3 is
            TensorRT's default).
        workspace_bytes: memory pool limit for the workspace (``--memPoolSize=workspace:<MiB>M`` on
            TRT >= 8.4, ``--workspace=<MiB>`` before); None = TensorRT's default (device memory).
        tactic_dram_bytes: memory pool limit ``tacticSharedMem``/``tacticDRAM`` where supported; None = default.
        timing_cache: reuse/write the timing cache file of (GPU, TRT version).
        profiles: optimization profile per dynamic input (full shapes); inputs not listed get the
            documented defaults of ``engine_runner.engines.tensorrt.default_profile``.
    Run options (not in the build key):
        use_cuda_graph: capture enqueue in a CUDA graph (``--useCudaGraph``).
        spin_wait: busy-wait on synchronisation (``--useSpinWait``) for stabler latency.
        no_data_transfers: time without H2D/D2H copies (``--noDataTransfers``).
        infer_streams: parallel inference streams (``--infStreams`` TRT >= 8.6, ``--streams`` before).
        warmup_ms: warm-up time before timing (``--warmUp``, ms).
        duration_s: minimum timed duration (``--duration``, s).
        iterations: minimum timed iterations (``--iterations``).
        avg_runs: iterations averaged per reported sample (``--avgRuns``; 1 = every iteration raw).
        separate_profile_run: per-layer profile in a second run (``--separateProfileRun``), so the
            headline latency is not distorted by the profiler.
    """

    model_config = ConfigDict(extra="forbid")

    builder_optimization_level: int = Field(3, ge=0, le=5)
    workspace_bytes: int | None = Field(None, ge=MIB, le=1 << 40)
    tactic_dram_bytes: int | None = Field(None, ge=0, le=1 << 40)
    timing_cache: bool = True
    use_cuda_graph: bool = False
    spin_wait: bool = True
    no_data_transfers: bool = False
    infer_streams: int = Field(1, ge=1, le=64)
    warmup_ms: int = Field(200, ge=0, le=600_000)
    duration_s: float = Field(3.0, ge=0, le=3600)
    iterations: int = Field(100, ge=1, le=10_000_000)
    avg_runs: int = Field(1, ge=1, le=1000)
    profiles: dict[str, ShapeRange] = Field(default_factory=dict)
    separate_profile_run: bool = True

    @field_validator("workspace_bytes")
    @classmethod
    def _whole_mib(cls, v: int | None) -> int | None:
        if v is not None and v % MIB:
            raise ValueError(f"workspace_bytes={v} must be a whole number of MiB (multiple of {MIB})")
        return v

    def build_key(self) -> dict[str, Any]:
        """The options that change the built engine (the engine-cache key part), JSON-safe."""
        return {
            "builder_optimization_level": self.builder_optimization_level,
            "workspace_bytes": self.workspace_bytes,
            "tactic_dram_bytes": self.tactic_dram_bytes,
            "profiles": {k: v.model_dump() for k, v in sorted(self.profiles.items())},
        }


def parse_tensorrt_options(data: dict[str, Any] | None) -> TensorRTOptions:
    """Validate ``BenchSpec.tensorrt`` (a dict) as :class:`TensorRTOptions`.

    Raises:
        InputError: naming every invalid field (``tensorrt.<field>``).
    """
    try:
        return validate_spec(TensorRTOptions, dict(data or {}))
    except InputError as exc:
        raise InputError(str(exc).replace("invalid spec: ", "invalid tensorrt options: ", 1)) from None


@dataclass(frozen=True)
class TensorRTAvailability:
    """Which TensorRT route this machine has.

    Attributes:
        route: ``"trtexec"``, ``"python"`` or None (no TensorRT).
        trtexec_path: absolute path of trtexec when ``route == "trtexec"``.
        reason: why TensorRT is unavailable (None when available).
        install_hint: how to install it (always set, for the docs/UI).
    """

    route: Route | None
    trtexec_path: str | None = None
    reason: str | None = None
    install_hint: str = INSTALL_HINT

    @property
    def available(self) -> bool:
        """True when a route exists."""
        return self.route is not None

    def describe(self) -> str:
        """One line for the UI/CLI: the route chosen, or why none."""
        if self.route == "trtexec":
            return f"TensorRT route: trtexec ({self.trtexec_path})"
        if self.route == "python":
            return "TensorRT route: TensorRT Python API (`tensorrt` module)"
        return f"TensorRT unavailable: {self.reason}"


def detect_tensorrt(env: dict[str, str] | None = None) -> TensorRTAvailability:
    """Find a TensorRT route without starting a process or importing tensorrt.

    Order: ``$ENGINESCOPE_TRTEXEC`` (must be an executable file), ``trtexec`` on ``PATH``, the
    ``tensorrt`` module (``importlib.util.find_spec``; a namespace package without a loader, as the
    ``tensorrt-stubs`` distribution leaves behind, does not count).

    Args:
        env: environment to read (default ``os.environ``).

    Raises:
        InputError: ``ENGINESCOPE_TRTEXEC`` is set but is not an executable file (names the variable).
    """
    env = dict(os.environ if env is None else env)
    explicit = env.get("ENGINESCOPE_TRTEXEC")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise InputError(f"ENGINESCOPE_TRTEXEC={explicit!r} is not an executable file")
        return TensorRTAvailability(route="trtexec", trtexec_path=os.path.abspath(explicit))
    found = shutil.which("trtexec", path=env.get("PATH"))
    if found:
        return TensorRTAvailability(route="trtexec", trtexec_path=os.path.abspath(found))
    try:
        spec = importlib.util.find_spec("tensorrt")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin is not None and spec.loader is not None:
        return TensorRTAvailability(route="python")
    stubs_only = spec is not None  # e.g. the `tensorrt-stubs` package: a namespace dir with .pyi files only
    return TensorRTAvailability(
        route=None,
        reason="no trtexec on PATH or in $ENGINESCOPE_TRTEXEC, and the `tensorrt` Python module is not installed"
        + (" (only type stubs, e.g. `tensorrt-stubs`, are present)" if stubs_only else ""),
    )
