"""Options of the PyTorch engine (``BenchSpec.torch``, engine ``torch``), validated with pydantic.

Every field maps to one ``enginescope bench`` flag (:data:`TORCH_FLAGS`); a bad value is refused with
that flag's name (:func:`parse_torch_options`). What the options mean (the engine is
``engine_runner.engines.torch_engine``; definitions also in docs/torch.md):

- ``compile`` (``--compile``): wrap the model in ``torch.compile(model, backend=compile_backend,
  mode=compile_mode)``; otherwise eager. The first call compiles (its time is recorded apart, never as a
  sample).
- ``cuda_graph`` (``--cuda-graph``, CUDA only): after warm-up, capture one forward pass in a
  ``torch.cuda.CUDAGraph`` and time ``graph.replay()``. Refused with ``compile_mode`` ``reduce-overhead``
  (that mode captures CUDA graphs itself).
- ``cast`` (``--cast``): how fp16/bf16 are made. ``weights``: ``model.to(dtype)`` (weights, activations
  and floating inputs in that dtype; what ``model.half()`` users run). ``autocast``: fp32 weights, the
  forward pass under ``torch.autocast(device_type, dtype)`` (per-op casts chosen by PyTorch's autocast
  op lists). fp32 and tf32 ignore it.
- ``allow_pickle`` (``--allow-pickle``): load pickle-based weights (``pytorch_model.bin``, ``*.pt``,
  ``*.pth``, ``*.ckpt``; pickled entries inside a ``.pt2``). Off by default: unpickling runs code
  chosen by whoever wrote the file. Recorded in every run's ``config``.
- ``seq_len`` (``--seq-len``): token positions of the generated text inputs (default
  :data:`DEFAULT_SEQ_LEN`); the ``sequence`` dim of the model's inputs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from profiles.errors import InputError

#: Token positions of generated text inputs when ``--seq-len`` is not given.
DEFAULT_SEQ_LEN = 128

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
Cast = Literal["weights", "autocast"]

#: ``TorchOptions`` field -> the ``enginescope bench`` flag that sets it.
TORCH_FLAGS: dict[str, str] = {
    "compile": "--compile", "compile_backend": "--compile-backend", "compile_mode": "--compile-mode",
    "cuda_graph": "--cuda-graph", "cast": "--cast", "allow_pickle": "--allow-pickle", "seq_len": "--seq-len",
}


class TorchOptions(BaseModel):
    """Options of a PyTorch run (``BenchSpec.torch``); semantics in the module doc.

    Attributes:
        compile: ``torch.compile`` the model (else eager).
        compile_backend: ``torch.compile`` backend name (``inductor`` is PyTorch's default).
        compile_mode: ``torch.compile`` mode.
        cuda_graph: capture and replay a CUDA graph (CUDA devices only).
        cast: ``weights`` (``model.to(dtype)``) or ``autocast`` for fp16/bf16.
        allow_pickle: allow pickle-based weight files.
        seq_len: token positions of generated text inputs, 1..1,000,000; None = :data:`DEFAULT_SEQ_LEN`
            (or the sequence length of ``--inputs``).
    """

    model_config = ConfigDict(extra="forbid")
    FIELD_FLAGS: ClassVar[dict[str, str]] = TORCH_FLAGS

    compile: bool = False
    compile_backend: str = Field("inductor", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    compile_mode: CompileMode = "default"
    cuda_graph: bool = False
    cast: Cast = "weights"
    allow_pickle: bool = False
    seq_len: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _combinations(self) -> TorchOptions:
        if self.cuda_graph and self.compile and self.compile_mode == "reduce-overhead":
            raise ValueError("--cuda-graph with --compile-mode reduce-overhead: that mode already captures CUDA "
                             "graphs (CUDA graph trees); drop one of them")
        if not self.compile and (self.compile_mode != "default" or self.compile_backend != "inductor"):
            raise ValueError("--compile-mode/--compile-backend apply only with --compile")
        return self

    def mode_label(self) -> str:
        """``"eager"`` or ``"torch.compile (backend inductor, mode default)"``, ``" + CUDA graph"`` appended
        when ``cuda_graph`` is on (what the output says about how the model ran)."""
        base = (f"torch.compile (backend {self.compile_backend}, mode {self.compile_mode})" if self.compile
                else "eager")
        return base + (" + CUDA graph" if self.cuda_graph else "")


def precision_detail(precision: str, cast: str) -> str:
    """How a torch precision was realised, as the run config and the output show it.

    ``fp32`` -> ``"fp32 (TF32 off)"``; ``tf32`` -> ``"tf32 (fp32 weights, TF32 matmul/cuDNN on)"``;
    ``fp16``/``bf16`` -> ``"fp16 (weights cast)"`` or ``"fp16 (autocast)"`` per ``cast``.

    Raises:
        InputError: ``--precision``: not a torch precision.
    """
    if precision == "fp32":
        return "fp32 (TF32 off)"
    if precision == "tf32":
        return "tf32 (fp32 weights, TF32 matmul/cuDNN on)"
    if precision in ("fp16", "bf16"):
        return f"{precision} ({'weights cast' if cast == 'weights' else 'autocast'})"
    raise InputError(f"--precision: {precision!r} is not a torch precision (fp32, tf32, fp16, bf16)")


def parse_torch_options(data: dict[str, Any] | None, labels: dict[str, str] | None = None) -> TorchOptions:
    """Validate ``BenchSpec.torch``.

    Args:
        labels: field -> the name the user knows it by (the dashboard form's labels); default
            :data:`TORCH_FLAGS` (CLI flags).

    Raises:
        InputError: ``invalid torch options: <flag>: <message>`` for every bad field (``--seq-len``,
            ``--compile-mode``...); unknown keys are named as they are.
    """
    from pydantic import ValidationError

    try:
        return TorchOptions.model_validate(dict(data or {}))
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            loc = e["loc"][0] if e["loc"] else None
            label = (labels or TORCH_FLAGS).get(str(loc), str(loc)) if loc is not None else "(torch options)"
            msg = str(e["ctx"]["error"]) if e["type"] == "value_error" and "error" in e.get("ctx", {}) else e["msg"]
            if loc is None and msg.startswith("--"):  # a combination check names its flags itself
                parts.append(msg)
            else:
                parts.append(f"{label}: {msg}")
        raise InputError("invalid torch options: " + "; ".join(parts)) from None
