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

User inputs (``--inputs FILE.npz``) and calibration data (``--calibration FILE.npz``) share one format and
one validation (:func:`validate_npz`): keys = the model's input names; every array has the input's dtype
and rank; the first axis of each sample-axis input (:func:`sample_axis_inputs`: symbolic first dim, or
the fixed batch of a fixed-batch model) holds N samples (same N for every key), the other axes are one
sample. ``--inputs``: each sample must have the run's resolved shape without its batch dim; N must be a
multiple of every batch size; the samples are split, in order, into N / b batches of the run's batch size
b (:func:`split_batches`). Named symbolic dims that no ``--shape``/``--dim`` sets take their size from the
file (:func:`npz_dim_values`), so ``--inputs tokens.npz`` alone fixes the sequence length.
Calibration: batch-1 feeds (fixed-batch models: batches of B), non-batch symbolic dims free.
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
            input and dim); a ``--dim`` names no symbolic dim of the model (lists them) or names the batch
            dim; the batch size differs from a model's
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
    symbolic = sorted({d for s in specs for d in s.shape if isinstance(d, str)})
    for param, v in dim_values.items():
        if param not in symbolic:
            raise InputError(f"--dim {param}={v}: {param!r} is not a symbolic dim of the model "
                             f"(its symbolic dims: {', '.join(symbolic) if symbolic else 'none'})")
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


def max_input_bytes() -> int:
    """The most bytes one batch's inputs may need together: ``ENGINESCOPE_MAX_INPUT_BYTES``, else half of
    this machine's physical memory (generated inputs live in host memory before any copy to a device).

    Raises:
        InputError: the variable is not a positive integer (names it).
    """
    import os

    raw = os.environ.get("ENGINESCOPE_MAX_INPUT_BYTES")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise InputError(f"environment variable ENGINESCOPE_MAX_INPUT_BYTES={raw!r} must be a positive integer")
        return value
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def check_input_bytes(specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]], *, what: str = "") -> int:
    """Refuse shapes whose inputs would not fit before anything is allocated; return the bytes they need.

    ``what`` names the flag(s) that set the shapes (``"--shape X=1x3x100000x100000"``, ``"--batch 65536"``);
    the message carries the byte count per input and the limit (:func:`max_input_bytes`).

    Raises:
        InputError: the summed size of one batch's inputs exceeds the limit.
    """
    import math

    limit = max_input_bytes()
    total = 0
    parts = []
    for s in specs:
        if s.name not in shapes:
            continue
        try:
            itemsize = np.dtype(s.dtype).itemsize
        except TypeError:
            itemsize = 8
        dims = [int(d) for d in shapes[s.name]]
        need = math.prod(dims) * itemsize
        total += need
        parts.append((s.name, dims, s.dtype, need))
    if total > limit:
        name, dims, dtype, need = max(parts, key=lambda p: p[3])
        head = f"{what}: " if what else ""
        raise InputError(
            f"{head}input {name!r} of shape {'x'.join(map(str, dims))} ({dtype}) would need {need} bytes "
            f"({need / 2**30:.1f} GiB){f'; all inputs {total} bytes' if total != need else ''}, more than the "
            f"limit of {limit} bytes (half this machine's memory, or ENGINESCOPE_MAX_INPUT_BYTES); refused before "
            f"allocating")
    return total


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def generate_inputs(specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded input tensors for ``shapes`` (rules in the module doc).

    Returns:
        ``{name: array}`` with each input's dtype and shape (C-contiguous).

    Raises:
        InputError: an input's dtype cannot be generated (string, bfloat16...; names the input).
    """
    check_input_bytes(specs, shapes)
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


def read_npz(path: str | Path, flag: str) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` at ``path`` (``allow_pickle=False``).

    Raises:
        InputError: file missing or not a readable .npz (names ``flag`` and the file).
    """
    import zipfile

    p = Path(path)
    not_npz = f"{flag} {p}: {p} is not a .npz archive of arrays (numpy.savez)"
    if not p.exists():
        raise InputError(f"{flag} {p}: file not found")
    # np.load reads any non-zip, non-.npy file as a pickle and then blames allow_pickle: check the format first
    if p.is_file() and not zipfile.is_zipfile(p):
        raise InputError(not_npz)
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(f"{flag} {p}: file not found") from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():  # an object array inside the archive
            raise InputError(f"{not_npz}; it holds object arrays, save plain numeric arrays") from None
        raise InputError(f"{flag} {p}: not a readable .npz ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{flag} {p}: not a readable .npz ({exc})") from None


def sample_axis_inputs(specs: Sequence[InputSpec]) -> list[str]:
    """Names of the inputs whose first axis is the sample (batch) axis in an ``.npz``: inputs with a
    symbolic first dim; in a fixed-batch model (:func:`fixed_batch` B), the inputs whose first dim is B.
    Other inputs (rank 0, or a fixed first dim beside free-batch inputs) are fed whole in every batch."""
    fb = fixed_batch(specs)
    if fb is None:
        return [s.name for s in specs if s.shape and s.is_symbolic(0)]
    return [s.name for s in specs if s.shape and s.shape[0] == fb]


def npz_dim_values(data: Mapping[str, np.ndarray], specs: Sequence[InputSpec],
                   shapes: Mapping[str, Sequence[int]] | None = None,
                   dim_values: Mapping[str, int] | None = None) -> dict[str, int]:
    """Values of named symbolic dims (not the first axis) that the arrays of an inputs ``.npz`` fix and that
    neither ``--shape`` (``shapes``) nor ``--dim`` (``dim_values``) sets: ``{dim_param: size}``, taken from
    the first input (in model order) whose array has the input's rank. Conflicts between inputs are left
    to :func:`validate_npz`, which then names the key."""
    shapes, dim_values = dict(shapes or {}), dict(dim_values or {})
    found: dict[str, int] = {}
    for s in specs:
        arr = data.get(s.name)
        if s.name in shapes or arr is None or arr.ndim != len(s.shape):
            continue
        for axis in range(1, len(s.shape)):
            d = s.shape[axis]
            if isinstance(d, str) and d not in dim_values and d not in found:
                found[d] = int(arr.shape[axis])
    return found


def validate_npz(data: Mapping[str, np.ndarray], specs: Sequence[InputSpec], *, flag: str, fname: str,
                 batch_sizes: Sequence[int] = (1,), shapes: Mapping[str, Sequence[int]] | None = None) -> int:
    """Check the arrays of an inputs or calibration ``.npz`` against the model; returns the sample count N.

    The format (one for ``--inputs`` and ``--calibration``): keys are the model's input names (every input,
    nothing else); each array has the input's dtype and rank. For a sample-axis input
    (:func:`sample_axis_inputs`) the first axis holds N samples (the same N for every such key, N >= 1, and
    a multiple of every entry of ``batch_sizes``); its other axes are one sample's dims. Every fixed dim of
    the model must match, except the first axis of a fixed-batch model (its samples). With ``shapes``
    (the resolved shape of each input for some batch size) every other axis must equal the resolved dim
    too; an input without a sample axis must have exactly its resolved shape.

    Args:
        data: ``{key: array}`` as :func:`read_npz` returns it.
        specs: the model's inputs.
        flag: the flag or field named in errors (``--inputs``, ``--calibration``).
        fname: file name named in errors.
        batch_sizes: N must be a multiple of each (the feeds are split into batches of that size).
        shapes: resolved shapes (``resolve_shapes``) to check the non-sample axes against, or None.

    Returns:
        N, or 1 when the model has no sample-axis input (the whole file is one feed).

    Raises:
        InputError: unknown or missing key, wrong dtype, rank or dim, differing sample counts, no
            samples, N not a multiple of a batch size (each names ``flag``, the file and the key).
    """
    names = [s.name for s in specs]
    sample_axis = set(sample_axis_inputs(specs))
    fb = fixed_batch(specs)
    for k in data:
        if k not in names:
            raise InputError(f"{flag} {fname}: key {k!r} is not an input of the model (inputs: {names})")
    for s in specs:
        if s.name not in data:
            raise InputError(f"{flag} {fname}: key {s.name!r} (a model input) is missing")
        arr = data[s.name]
        if str(arr.dtype) != s.dtype:
            raise InputError(f"{flag} {fname}: key {s.name!r} has dtype {arr.dtype}, the model input is {s.dtype}")
        if arr.ndim != len(s.shape):
            raise InputError(f"{flag} {fname}: key {s.name!r} has shape {list(arr.shape)} (rank {arr.ndim}); "
                             f"the model input is {list(s.shape)} (rank {len(s.shape)})")
        for axis, want in enumerate(s.shape):
            if axis == 0 and fb is not None and s.name in sample_axis:
                continue  # the samples of a fixed-batch model: checked as a multiple of the batch below
            if not s.is_symbolic(axis) and arr.shape[axis] != want:
                raise InputError(f"{flag} {fname}: key {s.name!r} dim {axis} is {arr.shape[axis]}, "
                                 f"fixed at {want} in the model")
        if shapes is not None:
            resolved = list(shapes[s.name])
            first = 1 if s.name in sample_axis else 0
            got = list(arr.shape[first:])
            if got != resolved[first:]:
                what = "one sample's shape" if first else "its shape"
                syms = [f"{d!r}" for d in s.shape[first:] if isinstance(d, str)]
                hint = (f"; set the symbolic dim(s) {', '.join(syms)} with --dim/--shape or the form's dim values"
                        if syms else "")
                raise InputError(f"{flag} {fname}: key {s.name!r}: {what} is {got}, the run resolves input "
                                 f"{s.name!r} to {resolved[first:]} (model dims {list(s.shape)}){hint}")
    if not sample_axis:
        return 1
    counts = {n: int(data[n].shape[0]) for n in names if n in sample_axis}
    if len(set(counts.values())) != 1:
        raise InputError(f"{flag} {fname}: inputs hold different sample counts along the first axis: {counts}")
    n = next(iter(counts.values()))
    key = next(iter(counts))
    if n == 0:
        raise InputError(f"{flag} {fname}: key {key!r} holds no samples (first axis is 0)")
    for b in batch_sizes:
        if n % b:
            raise InputError(f"{flag} {fname}: key {key!r} holds {n} samples along its first axis, not a "
                             f"multiple of the batch size {b}; give a multiple of every batch size "
                             f"(e.g. {n - n % b or b})")
    return n


def split_batches(data: Mapping[str, np.ndarray], specs: Sequence[InputSpec], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Split validated ``.npz`` arrays (:func:`validate_npz`) into feeds of ``batch_size`` samples, in order:
    feed i holds samples ``[i*b, (i+1)*b)`` of every sample-axis input; other inputs are fed whole.

    Returns:
        ``N // batch_size`` feeds ``{input_name: C-contiguous array}`` (one feed when the model has no
        sample-axis input).
    """
    sample_axis = set(sample_axis_inputs(specs))
    if not sample_axis:
        return [{s.name: np.ascontiguousarray(data[s.name]) for s in specs}]
    n = int(data[next(iter(sample_axis))].shape[0])
    return [{s.name: np.ascontiguousarray(data[s.name][i:i + batch_size]) if s.name in sample_axis
             else np.ascontiguousarray(data[s.name]) for s in specs}
            for i in range(0, n - n % batch_size, batch_size)]


def load_calibration_npz(path: str | Path, specs: Sequence[InputSpec]) -> list[dict[str, np.ndarray]]:
    """Calibration feeds from a ``.npz`` in the :func:`validate_npz` format (flag ``--calibration``).

    Samples are fed one at a time (batch-1 feeds) when the model's batch is free, in batches of the fixed
    batch B otherwise (N must then be a multiple of B; N == B is one feed). Symbolic non-batch dims may
    take any size (calibration ranges do not depend on the run's shapes).

    Raises:
        InputError: see :func:`read_npz` and :func:`validate_npz`.
    """
    p = Path(path)
    data = read_npz(p, "--calibration")
    batch = fixed_batch(specs) or 1
    validate_npz(data, specs, flag="--calibration", fname=p.name, batch_sizes=[batch])
    return split_batches(data, specs, batch)


@dataclass(frozen=True)
class InputsNpz:
    """A user's benchmark inputs (``--inputs FILE.npz``, ``BenchSpec.inputs_npz``), validated.

    Attributes:
        path: the file.
        sha256: hex digest of its bytes.
        samples: N, the sample count (first axis of the sample-axis inputs).
        data: ``{input_name: array}`` ``[N, *one sample's dims]`` (inputs without a sample axis: whole).
    """

    path: Path
    sha256: str
    samples: int
    data: dict[str, np.ndarray]

    def batches(self, specs: Sequence[InputSpec], batch_size: int) -> list[dict[str, np.ndarray]]:
        """The ``N // batch_size`` feeds of one run (:func:`split_batches`); the first is the timed one."""
        return split_batches(self.data, specs, batch_size)

    def describe(self) -> dict[str, Any]:
        """JSON for ``runs.config["inputs"]``."""
        return {"source": "npz", "file": self.path.name, "path": str(self.path), "sha256": self.sha256,
                "samples": self.samples}


def load_inputs_npz(path: str | Path, specs: Sequence[InputSpec],
                    shapes_by_batch: Mapping[int, Mapping[str, Sequence[int]]],
                    data: Mapping[str, np.ndarray] | None = None) -> InputsNpz:
    """Load and validate benchmark inputs (format of :func:`validate_npz`, flag ``--inputs``) against the
    resolved shapes of every batch size of the run (N must be a multiple of each).

    Args:
        data: the file's arrays when already read (:func:`read_npz`), else they are read here.

    Raises:
        InputError: see :func:`read_npz` and :func:`validate_npz`.
    """
    import hashlib

    p = Path(path)
    data = dict(data) if data is not None else read_npz(p, "--inputs")
    n = 1
    for b, shapes in shapes_by_batch.items():
        n = validate_npz(data, specs, flag="--inputs", fname=p.name, batch_sizes=[b], shapes=shapes)
    return InputsNpz(p, hashlib.sha256(p.read_bytes()).hexdigest(), n, data)


def describe_shapes(shapes: Mapping[str, Sequence[int]]) -> str:
    """``"a=1x3x224x224 b=1x16"`` for messages."""
    return " ".join(f"{k}={'x'.join(map(str, v))}" for k, v in shapes.items())


def npz_feeds_summary(feeds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Small JSON description of calibration feeds: count and the first feed's shapes."""
    return {"count": len(feeds), "shapes": {k: list(np.asarray(v).shape) for k, v in (feeds[0].items() if feeds else [])}}
