"""The process an external profiler (``ncu``, ``nsys``) runs: one engine configuration, a few iterations inside NVTX
ranges, nothing stored.

``python -m engine_runner.profile_child REQUEST.json`` where the request (written by
:func:`write_request`) names the engine, the model file the measured run used, its format, precision, the batch's
input shapes, the BenchSpec and an ``.npz`` of the measured run's inputs. The child prepares the variant
(``BenchEngine.prepare``), runs ``warmup`` inferences, then ``iterations`` inferences, each inside an NVTX range
``iteration N``, all inside the range :data:`NVTX_RANGE` and between ``cudaProfilerStart``/``cudaProfilerStop``
(so ``ncu --nvtx --nvtx-include enginescope_capture/`` and ``nsys --capture-range=cudaProfilerApi`` see only the
measured iterations, not model loading or warm-up). ``BenchEngine.infer`` returns host outputs, so every iteration
has finished on the GPU before the next starts.

NVTX and the profiler API come from ``torch.cuda`` (PyTorch is on the GPU machines the profilers run on); without
torch the child runs the iterations unmarked and says so on stderr (ncu's NVTX filter then profiles nothing).
Exit status 0 on success, 1 on failure (the message on stderr).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: The NVTX range around the measured iterations (ncu's ``--nvtx-include`` names it with a trailing ``/``).
NVTX_RANGE = "enginescope_capture"


def write_request(path: Path, *, engine: str, model_path: Path, model_format: str, precision: str, batch: int,
                  shapes: dict[str, list[int]], spec: dict[str, Any], inputs: dict[str, np.ndarray],
                  warmup: int, iterations: int) -> Path:
    """Write the child's request (JSON) and the inputs (``<path>.npz``) beside it; returns ``path``.

    Args:
        engine: canonical engine name; model_path: the file/folder the measured run prepared;
        shapes: input name -> dims of this batch; spec: ``BenchSpec.model_dump(mode="json")``;
        inputs: the measured run's feed; warmup / iterations: counts (>= 0 / >= 1).
    """
    npz = path.with_suffix(".npz")
    np.savez(npz, **inputs)  # type: ignore[arg-type]  # numpy's stub types the first keyword as allow_pickle
    path.write_text(json.dumps({"engine": engine, "model_path": str(model_path), "model_format": model_format,
                                "precision": precision, "batch": batch, "shapes": shapes, "spec": spec,
                                "inputs": str(npz), "warmup": warmup, "iterations": iterations}))
    return path


@contextmanager
def _marks() -> Any:
    """(push, pop, start, stop) of NVTX and the CUDA profiler API, or no-ops without torch/CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device")
        yield (torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop, torch.cuda.profiler.start,
               torch.cuda.profiler.stop)
    except (ImportError, RuntimeError) as exc:
        print(f"profile_child: no NVTX/profiler API ({exc}): iterations run unmarked", file=sys.stderr)
        yield (lambda _t: None, lambda: None, lambda: None, lambda: None)


def run_request(path: Path) -> None:
    """Run the request at ``path`` (see the module doc).

    Raises:
        EngineScopeError: from the engine (prepare/infer), with its message.
    """
    from engine_runner.engines import get_engine_impl
    from profiles.specs import BenchSpec

    req = json.loads(path.read_text())
    spec = BenchSpec.model_validate(req["spec"])
    inputs = dict(np.load(req["inputs"]))
    shapes = {int(req["batch"]): {k: list(v) for k, v in req["shapes"].items()}}
    workdir = path.parent / "child"
    workdir.mkdir(parents=True, exist_ok=True)
    with get_engine_impl(req["engine"]) as eng:
        variant = eng.prepare(Path(req["model_path"]), req["precision"], shapes, spec, workdir)
        try:
            for _ in range(int(req["warmup"])):
                eng.infer(variant, inputs)
            with _marks() as (push, pop, start, stop):
                start()
                push(NVTX_RANGE)
                for i in range(int(req["iterations"])):
                    push(f"iteration {i}")
                    eng.infer(variant, inputs)
                    pop()
                pop()
                stop()
        finally:
            eng.release(variant)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``profile_child REQUEST.json``."""
    from profiles.errors import EngineScopeError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine_runner.profile_child REQUEST.json", file=sys.stderr)
        return 2
    try:
        run_request(Path(args[0]))
    except EngineScopeError as exc:
        print(f"profile_child: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
