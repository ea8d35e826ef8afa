"""The TensorRT engine module type-checked with mypy against the installed ``tensorrt-stubs``, and its
behaviour on a machine without TensorRT.

tensorrt-stubs 10.13.0.35.1 cannot be used as installed: its ``tensorrt/`` and ``tensorrt_bindings/``
folders have no ``py.typed`` (mypy skips them) and a few generated signatures are not valid Python
(a parameter named ``in``; parameters without defaults after ones with defaults). The test copies the
``.pyi`` files to a temporary folder, repairs exactly those two syntax defects, points ``MYPYPATH`` at
it, and reports only the errors in our files (the stubs' own inconsistencies are not ours). A probe
with a deliberate misuse of the API must fail, proving the stubs are in effect.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKED = ["engine_runner/engines/tensorrt.py", "engine_runner/trt_build.py"]


def _site_stub_dirs() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("tensorrt")
    if spec is None or not spec.submodule_search_locations:
        return []
    base = Path(list(spec.submodule_search_locations)[0]).parent
    return [base / "tensorrt", base / "tensorrt_bindings"]


def _fix_line(line: str) -> str:
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not m or not m.group(2).strip():
        return line
    out, seen_default = [], False
    for p in (x.strip() for x in re.split(r",\s*(?![^\[]*\])", m.group(2))):
        p = re.sub(r"^in:", "in_:", p)
        if "=" in p:
            seen_default = True
        elif seen_default and not p.startswith("*"):
            p += " = ..."
        out.append(p)
    return m.group(1) + ", ".join(out) + m.group(3)


@pytest.fixture(scope="module")
def stub_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dirs = _site_stub_dirs()
    if not all((d / "__init__.pyi").is_file() for d in dirs) or not dirs:
        pytest.skip("tensorrt-stubs is not installed (./run_tests.sh installs it: pip install --no-deps tensorrt-stubs)")
    dst = tmp_path_factory.mktemp("trt_stubs")
    for d in dirs:
        shutil.copytree(d, dst / d.name)
    for f in dst.rglob("*.pyi"):
        f.write_text("\n".join(_fix_line(line) for line in f.read_text().splitlines()) + "\n")
    return dst


def _mypy(stub_path: Path, *files: str) -> tuple[int, str]:
    env = {**os.environ, "MYPYPATH": str(stub_path)}
    proc = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
                           *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_engine_module_type_checks_against_stubs(stub_path: Path, tmp_path: Path) -> None:
    # a fresh module name each time: mypy's incremental cache maps a module name to the path it saw first
    probe = tmp_path / f"trt_probe_{uuid.uuid4().hex[:12]}.py"
    probe.write_text("import tensorrt as trt\n\nflag: int = trt.BuilderFlag.FP16\nbuilder: str = trt.Builder\n")
    _, out = _mypy(stub_path, *CHECKED, str(probe))
    ours = [line for line in out.splitlines() if any(line.startswith(f) for f in CHECKED)]
    assert ours == [], "\n".join(ours)
    probe_errors = [line for line in out.splitlines() if f"{probe.name}:" in line and ": error:" in line]
    assert len(probe_errors) == 2, out[-3000:]  # the stubs are really in effect


def test_engine_without_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine_runner.engines.tensorrt import Engine
    from profiles.errors import EngineUnavailableError, InputError
    from profiles.trt_spec import TensorRTAvailability

    eng = Engine(availability=TensorRTAvailability(route=None, reason="no trtexec, no tensorrt"))
    with pytest.raises(EngineUnavailableError, match="pip install tensorrt"):
        eng.version()
    assert eng.onnx_variant_for("fp16") == "fp32"  # TensorRT 10 rules: fp32 ONNX + --fp16
    assert eng.onnx_variant_for("int8-qdq") == "int8-qdq"
    with pytest.raises(InputError, match="precision"):
        eng.onnx_variant_for("int4")


def test_profile_from_shapes_refuses_out_of_range() -> None:
    from engine_runner.engines.tensorrt import profile_from_shapes
    from profiles.errors import InputError
    from profiles.trt_spec import ShapeRange

    dims = {"x": ["N", 3, 8, 8], "k": [2]}
    prof = profile_from_shapes({1: {"x": [1, 3, 8, 8], "k": [2]}, 8: {"x": [8, 3, 8, 8], "k": [2]}}, dims, {})
    assert set(prof) == {"x"} and prof["x"].min == [1, 3, 8, 8] and prof["x"].opt == prof["x"].max == [8, 3, 8, 8]
    with pytest.raises(InputError, match=r"input 'x' dim 0 = 8 is outside the optimization profile range 1\.\.4"):
        profile_from_shapes({8: {"x": [8, 3, 8, 8]}}, dims, {"x": ShapeRange(min=[1, 3, 8, 8], opt=[2, 3, 8, 8], max=[4, 3, 8, 8])})
