"""Model inputs for benchmarks: read input specs, resolve symbolic dims, generate seeded data, load
calibration .npz files. Engine-independent (ONNX Runtime and TensorRT runs share it).

Shape resolution (per input, per batch size), in this order:

1. ``spec.shapes[name]`` (``--shape NAME=D1xD2...``): used as given, except that when the model's first
   dim is symbolic the batch size replaces it (so ``--batch 1 --batch 8 --shape ids=1x128`` runs 1x128
   and 8x128). Every fixed dim of the model must match, and the rank must match.
2. otherwise each dim: fixed -> kept; first dim symbolic -> the batch size; other symbolic dims ->
   ``spec.dim_values[dim_param]`` (``--dim sequence=128``), else 1 (documented default; for a
   transformer pass ``--dim`` or ``--shape`` to set the sequence length).

A model whose inputs all have a fixed first dim runs only at that batch size.

Generated data (seeded, identical for every precision so accuracy compares like with like):
floats N(0, 1); integer inputs: names containing ``mask`` -> 1, ``token_type``/``segment`` -> 0,
other integers uniform in [0, 100); bool -> True. The generator of each input is
``numpy.random.default_rng([seed, crc32(name)])``, so a tensor does not depend on the other inputs.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from profiles.errors import InputError, ModelError

INT_ID_HIGH = 100  #: generated integer ids are uniform in [0, INT_ID_HIGH)


@dataclass(frozen=True)
class InputSpec:
    """One graph input (initializers listed as inputs by IR < 4 files are excluded).

    Attributes:
        name: tensor name.
        dtype: numpy dtype name (``float32``, ``int64``...), or the ONNX name if numpy has none.
        shape: dims: ``int`` fixed (> 0), ``str`` symbolic (``dim_param``) or ``None`` unknown.
    """

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    def is_symbolic(self, axis: int) -> bool:
        """True when dim ``axis`` is not a fixed positive int."""
        d = self.shape[axis]
        return not (isinstance(d, int) and d > 0)


def read_input_specs(model_path: Path) -> list[InputSpec]:
    """Inputs of the ONNX model at ``model_path`` (external data is not loaded).

    Raises:
        ModelError: not a readable ONNX model (names the file); an input is not a tensor.
    """
    from profiles.onnx_inspect import _dims, dtype_name, load_proto

    model = load_proto(Path(model_path))
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if vi.type.WhichOneof("value") != "tensor_type":
            raise ModelError(f"{Path(model_path).name}: input {vi.name!r} is not a tensor; only tensor inputs can be benchmarked")
        tt = vi.type.tensor_type
        dtype = dtype_name(tt.elem_type) or "undefined"
        shape = tuple(_dims(tt.shape)) if tt.HasField("shape") else ()
        specs.append(InputSpec(vi.name, dtype, shape))
    if not specs:
        raise ModelError(f"{Path(model_path).name}: the model has no inputs to feed")
    return specs


def fixed_batch(specs: Sequence[InputSpec]) -> int | None:
    """The batch size of a model whose inputs all have a fixed first dim (that of the first input), or
    None when some input's first dim is symbolic (the batch size is free)."""
    ranked = [s for s in specs if s.shape]
    if not ranked or any(s.is_symbolic(0) for s in ranked):
        return None
    return int(ranked[0].shape[0])  # type: ignore[arg-type]


def resolve_shapes(specs: Sequence[InputSpec], batch_size: int, shapes: Mapping[str, Sequence[int]] | None = None,
                   dim_values: Mapping[str, int] | None = None) -> dict[str, list[int]]:
    """Concrete shape of every input for ``batch_size`` (rules in the module doc).

    Returns:
        ``{input_name: [dims]}`` in input order.

    Raises:
        InputError: a ``--shape`` names no input, has the wrong rank or contradicts a fixed dim (names the
            input and dim); a ``--dim`` names the batch dim; the batch size differs from a model's
            fixed batch; a ``--dim`` value < 1.
    """
    shapes = dict(shapes or {})
    dim_values = dict(dim_values or {})
    names = {s.name for s in specs}
    for name in shapes:
        if name not in names:
            raise InputError(f"--shape {name}=...: the model has no input {name!r} (inputs: {sorted(names)})")
    for param, v in dim_values.items():
        if v < 1:
            raise InputError(f"--dim {param}={v}: a dim value must be >= 1")
    fb = fixed_batch(specs)
    if fb is not None and batch_size != fb:
        first = next(s for s in specs if s.shape)
        raise InputError(f"batch size {batch_size}: input {first.name!r} has a fixed batch dim {list(first.shape)}; "
                         f"this model runs only at batch {fb}")
    out: dict[str, list[int]] = {}
    for s in specs:
        if s.shape and s.is_symbolic(0) and isinstance(s.shape[0], str) and s.shape[0] in dim_values \
                and dim_values[s.shape[0]] != batch_size:
            raise InputError(f"--dim {s.shape[0]}={dim_values[s.shape[0]]} names the batch dim of input {s.name!r}; "
                             f"use --batch for it")
        if s.name in shapes:
            given = list(shapes[s.name])
            if len(given) != len(s.shape):
                raise InputError(f"--shape {s.name}={'x'.join(map(str, given))}: input {s.name!r} has rank "
                                 f"{len(s.shape)} {list(s.shape)}, the shape has rank {len(given)}")
            for axis, (want, got) in enumerate(zip(s.shape, given)):
                if not s.is_symbolic(axis) and want != got:
                    raise InputError(f"--shape {s.name}={'x'.join(map(str, given))}: dim {axis} of input "
                                     f"{s.name!r} is fixed at {want} in the model, got {got}")
            if s.shape and s.is_symbolic(0):
                given[0] = batch_size
            out[s.name] = given
            continue
        dims: list[int] = []
        for axis, d in enumerate(s.shape):
            if not s.is_symbolic(axis):
                dims.append(int(d))  # type: ignore[arg-type]
            elif axis == 0:
                dims.append(batch_size)
            elif isinstance(d, str) and d in dim_values:
                dims.append(int(dim_values[d]))
            else:
                dims.append(1)
        out[s.name] = dims
    return out


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def generate_inputs(specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded input tensors for ``shapes`` (rules in the module doc).

    Returns:
        ``{name: array}`` with each input's dtype and shape (C-contiguous).

    Raises:
        InputError: an input's dtype cannot be generated (string, bfloat16...; names the input).
    """
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        shape = tuple(int(d) for d in shapes[s.name])
        try:
            dt = np.dtype(s.dtype)
        except TypeError:
            raise InputError(f"input {s.name!r}: dtype {s.dtype} cannot be generated; supply the data another way") from None
        lname = s.name.lower()
        if dt.kind == "f":
            arr = _rng(seed, s.name).standard_normal(shape).astype(dt)
        elif dt.kind in "iu":
            if "mask" in lname:
                arr = np.ones(shape, dt)
            elif "token_type" in lname or "segment" in lname:
                arr = np.zeros(shape, dt)
            else:
                arr = _rng(seed, s.name).integers(0, INT_ID_HIGH, size=shape).astype(dt)
        elif dt.kind == "b":
            arr = np.ones(shape, dt)
        else:
            raise InputError(f"input {s.name!r}: dtype {s.dtype} cannot be generated; supply the data another way")
        feeds[s.name] = np.ascontiguousarray(arr)
    return feeds


def load_calibration_npz(path: str | Path, specs: Sequence[InputSpec]) -> list[dict[str, np.ndarray]]:
    """Calibration feeds from a ``.npz`` whose keys are the model's input names.

    Each array has the input's rank and dtype, and every fixed dim of the model. When the input's first
    dim is symbolic the array's first axis holds samples and is split into batch-1 feeds (all keys must
    then have the same first-axis length); otherwise the whole file is one feed.

    Returns:
        A list of ``{input_name: array}`` feeds.

    Raises:
        InputError: file missing/unreadable, a key missing or unknown, or a rank/dim/dtype mismatch
            (names the file and the key).
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(f"--calibration {p}: file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"--calibration {p}: not a readable .npz ({exc})") from None
    names = [s.name for s in specs]
    for k in data:
        if k not in names:
            raise InputError(f"--calibration {p.name}: key {k!r} is not an input of the model (inputs: {names})")
    for s in specs:
        if s.name not in data:
            raise InputError(f"--calibration {p.name}: key {s.name!r} (a model input) is missing")
        arr = data[s.name]
        if str(arr.dtype) != s.dtype:
            raise InputError(f"--calibration {p.name}: key {s.name!r} has dtype {arr.dtype}, the model input is {s.dtype}")
        if arr.ndim != len(s.shape):
            raise InputError(f"--calibration {p.name}: key {s.name!r} has shape {list(arr.shape)} (rank {arr.ndim}); "
                             f"the model input is {list(s.shape)} (rank {len(s.shape)})")
        for axis, want in enumerate(s.shape):
            if not s.is_symbolic(axis) and arr.shape[axis] != want:
                raise InputError(f"--calibration {p.name}: key {s.name!r} dim {axis} is {arr.shape[axis]}, "
                                 f"fixed at {want} in the model")
    batched = [s for s in specs if s.shape and s.is_symbolic(0)]
    if not batched:
        return [data]
    counts = {s.name: int(data[s.name].shape[0]) for s in batched}
    if len(set(counts.values())) != 1:
        raise InputError(f"--calibration {p.name}: inputs hold different sample counts along the first axis: {counts}")
    n = next(iter(counts.values()))
    if n == 0:
        raise InputError(f"--calibration {p.name}: no samples (first axis is 0)")
    feeds = []
    for i in range(n):
        feeds.append({s.name: (np.ascontiguousarray(data[s.name][i:i + 1]) if s in batched else data[s.name])
                      for s in specs})
    return feeds


def describe_shapes(shapes: Mapping[str, Sequence[int]]) -> str:
    """``"a=1x3x224x224 b=1x16"`` for messages."""
    return " ".join(f"{k}={'x'.join(map(str, v))}" for k, v in shapes.items())


def npz_feeds_summary(feeds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Small JSON description of calibration feeds: count and the first feed's shapes."""
    return {"count": len(feeds), "shapes": {k: list(np.asarray(v).shape) for k, v in (feeds[0].items() if feeds else [])}}
