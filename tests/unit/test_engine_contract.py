"""The engine contract lives in ``engine_runner.engines.base``; engines never import the job package.

Import direction (issue 9, "Engine contract first"): engines -> ``engine_runner.engines.base``, job
(``engine_runner.jobs.model_bench``) -> engines. These tests read every module under
``engine_runner/engines`` with ``ast`` (module-level and function-level imports alike) and import each one.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import engine_runner.engines as engines_pkg

ENGINES_DIR = Path(engines_pkg.__file__).resolve().parent
ENGINE_FILES = sorted(ENGINES_DIR.glob("*.py"))


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import statement in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = "engine_runner.engines"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from engine_runner import jobs`` names the package in the alias
            found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return found


def test_the_engine_files_are_found() -> None:
    names = {p.stem for p in ENGINE_FILES}
    assert {"__init__", "base", "onnxruntime", "tensorrt"} <= names


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.name)
def test_no_engine_module_imports_the_jobs_package(path: Path) -> None:
    bad = [(line, mod) for line, mod in _imported_modules(path)
           if mod == "engine_runner.jobs" or mod.startswith("engine_runner.jobs.")]
    assert bad == [], f"{path.name} imports engine_runner.jobs at line(s) {bad}"


def test_the_checker_sees_a_jobs_import(tmp_path: Path) -> None:
    """The ast walk finds jobs imports in every spelling (so the test above can fail)."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from engine_runner.jobs.model_bench import plan\n"
                 "from engine_runner import jobs\nimport engine_runner.jobs\nfrom ..jobs import model_bench\n")
    mods = [m for _, m in _imported_modules(f)]
    assert "engine_runner.jobs.model_bench" in mods
    assert "engine_runner.jobs" in mods
    assert mods.count("engine_runner.jobs") >= 3


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.name)
def test_every_engine_module_imports(path: Path) -> None:
    mod = "engine_runner.engines" if path.stem == "__init__" else f"engine_runner.engines.{path.stem}"
    importlib.import_module(mod)


def test_the_job_uses_the_contract_from_base() -> None:
    from engine_runner.engines import base
    from engine_runner.jobs import model_bench

    for name in ("BenchEngine", "EngineMeasurement", "MeasureHooks", "PreparedVariant"):
        assert getattr(model_bench, name) is getattr(base, name)
    assert not hasattr(model_bench, "LayerRow") and not hasattr(model_bench, "guard_layer_profile")


def test_the_engines_satisfy_the_protocol() -> None:
    from engine_runner.engines import get_engine_impl
    from engine_runner.engines.base import BenchEngine

    for name in ("onnxruntime", "tensorrt"):
        assert isinstance(get_engine_impl(name), BenchEngine)


def test_engine_modules_cover_the_catalogue() -> None:
    from engine_runner.engines import ENGINE_MODULES
    from profiles import catalog

    assert list(ENGINE_MODULES) == catalog.engines()
    # engines/<name>.py, except torch: torch_engine.py, so that no module of ours is named like the torch package
    assert all(m == f"engine_runner.engines.{name}" + ("_engine" if name == "torch" else "")
               for name, m in ENGINE_MODULES.items())


def test_get_engine_impl_takes_aliases_and_refuses_unknown_names() -> None:
    from engine_runner.engines import get_engine_impl
    from profiles.errors import InputError

    assert get_engine_impl("ORT").name == "onnxruntime"
    assert get_engine_impl("trt").name == "tensorrt"
    with pytest.raises(InputError, match=r"^--engine: 'jax' is not an engine \(choose onnxruntime, tensorrt, torch"):
        get_engine_impl("jax")


def test_a_catalogued_engine_without_its_module_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch (built by another change) or any engine whose module is missing: EngineUnavailableError naming it."""
    from engine_runner import engines
    from profiles.errors import EngineUnavailableError

    monkeypatch.setitem(engines.ENGINE_MODULES, "torch", "engine_runner.engines.no_such_engine_module")
    with pytest.raises(EngineUnavailableError, match=r"--engine torch: the torch engine is not implemented"):
        engines.get_engine_impl("pytorch")


def test_the_torch_engine_runs_native_formats() -> None:
    """The PyTorch engine is a BenchEngine and a NativeModelEngine (hf folders, pt2 programs); ONNX engines
    run ONNX only (``model_formats``)."""
    from engine_runner.engines import get_engine_impl
    from engine_runner.engines.base import BenchEngine, NativeModelEngine, model_formats

    torch_engine = get_engine_impl("pytorch")
    assert isinstance(torch_engine, BenchEngine) and isinstance(torch_engine, NativeModelEngine)
    assert model_formats(torch_engine) == ("hf", "pt2")
    assert model_formats(get_engine_impl("onnxruntime")) == ("onnx",)
    assert not isinstance(get_engine_impl("onnxruntime"), NativeModelEngine)


def test_timing_progress_says_when_the_loop_runs_past_its_iteration_minimum() -> None:
    """Past ``iterations`` the loop runs on until ``min_duration_s``: the message says so ("timing 3673
    iterations (min 100), 1.5/2 s"), never "3673/100"; the fraction follows the larger bound and stops at 1."""
    from engine_runner.engines.base import MeasureHooks

    seen: list[tuple[str, float]] = []
    hooks = MeasureHooks(check_cancelled=lambda: None, progress=lambda m, f: seen.append((m, f)), stage=lambda m: None)
    cb = hooks.timing_progress(min_duration_s=2.0, weight=1.0)
    cb("warmup", 5, 10, 0)
    cb("timing", 50, 100, 100_000_000)
    cb("timing", 3673, 100, 1_500_000_000)
    cb("timing", 9000, 100, 2_500_000_000)
    assert [m for m, _ in seen] == ["warm-up 5/10", "timing 50/100", "timing 3673 iterations (min 100), 1.5/2 s",
                                    "timing 9000 iterations (min 100), 2.5/2 s"]
    fracs = [f for _, f in seen]
    assert fracs[0] == 0.1 and fracs[1] == 0.1 + 0.9 * 0.5 and fracs[3] == 1.0 and fracs == sorted(fracs)
