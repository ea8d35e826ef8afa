"""Where a job may run: the accelerator-type name a user picks (CLI ``--gpu-type``, the New benchmark form's
"GPU type" field), checked once here for every caller (the Ray executor, ``enginescope jobs submit``, the form).

Pure (no Ray import): the name becomes the Ray custom resource key ``accelerator_type:<T>``
(engine_runner.executors.resources).
"""

from __future__ import annotations

import re

from profiles.errors import InputError

_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def normalize_gpu_type(value: str | None, label: str = "--gpu-type") -> str | None:
    """``value`` stripped (None/empty = any type); Ray's names are kept as written (``H100``, ``A10G``); a
    leading ``accelerator_type:`` is dropped.

    Args:
        label: the field named in the error (``--gpu-type`` for the CLI, ``GPU type`` for the form).

    Raises:
        InputError: characters other than letters, digits, ``_ . -`` (the name becomes a resource key).
    """
    if value is None or not str(value).strip():
        return None
    v = str(value).strip()
    if v.lower().startswith("accelerator_type:"):
        v = v.split(":", 1)[1]
    if not _TYPE_RE.match(v):
        raise InputError(f"{label} {value!r} is not an accelerator type name such as H100, A10G or A100-80G")
    return v
