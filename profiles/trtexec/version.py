"""TensorRT version numbers as trtexec and the Python API print them.

trtexec prints its version twice: in the banner ``&&&& RUNNING TensorRT.trtexec [TensorRT v101601]``
and as ``TensorRT version: 10.16.1`` (TensorRT >= 8.2; 8.0 prints the integer code ``8003``). The
integer code is ``NV_TENSORRT_VERSION``: ``major*1000 + minor*100 + patch`` up to TensorRT 9
(``8003`` = 8.0.3, ``8600`` = 8.6.0) and ``major*10000 + minor*100 + patch`` from TensorRT 10
(``100300`` = 10.3.0, ``101601`` = 10.16.1), as NvInferVersion.h defines it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from profiles.errors import ParseError

_DOTTED = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_CODE = re.compile(r"^\s*v?(\d{4,6})\s*$")


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version ``major.minor.patch`` (build number dropped). Ordered, hashable."""

    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def code(self) -> int:
        """``NV_TENSORRT_VERSION`` integer (see module docstring)."""
        if self.major >= 10:
            return self.major * 10000 + self.minor * 100 + self.patch
        return self.major * 1000 + self.minor * 100 + self.patch

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """Parse ``"10.16.1"``, ``"8.6.1.6"``, ``"v101601"``, ``"8003"``.

        Raises:
            ParseError: text is not a TensorRT version (names the text).
        """
        text = str(text).strip()
        m = _CODE.match(text)
        if m:
            code = int(m.group(1))
            if code >= 100000:
                return cls(code // 10000, (code // 100) % 100, code % 100)
            return cls(code // 1000, (code // 100) % 10, code % 100)
        m = _DOTTED.match(text)
        if m:
            return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
        raise ParseError(f"{text!r} is not a TensorRT version (expected e.g. 10.16.1 or v101601)")
