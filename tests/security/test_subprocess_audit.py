"""Subprocess audit (issue 12): user text never reaches a shell.

- Static: no call in the repository's Python passes ``shell=True`` (or any non-False ``shell``), and none uses
  ``os.system`` / ``os.popen`` / ``subprocess.getoutput`` / ``getstatusoutput`` or a string command.
- Runtime: real operations run with ``subprocess.Popen`` wrapped by a checker that records every call and
  fails on ``shell=True``, a ``str`` command, or user-supplied text (a model / file name full of shell
  metacharacters) in ``argv[0]``: the vLLM launcher (a fake ``python -m vllm...``), the Nsight Systems import
  (a stand-in nsys), an inline ``enginescope bench``.
- The vLLM launcher binds 127.0.0.1 with a generated key; ``trust_remote_code`` and pickle loading are off
  unless opted in, and the opt-in is in the spec stored with the run.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.onnx_builders import linear_model, save_plain
from tests.unit.test_nsys_tool import _report, fake_nsys  # noqa: F401 - fixture
from tests.unit.test_vllm_server import _cfg, fake_python  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "evil; $(touch /tmp/es-pwned) `id` | rm -rf ~ & 'q\" *"


# --------------------------------------------------------------------------------------------------
# Static check


def _python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return [REPO / p for p in out if (REPO / p).is_file()]


_BANNED = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
_SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec"}


def violations(source: str, name: str) -> list[str]:
    """Shell-ish calls in ``source``: ``shell=`` other than False, banned functions, string commands."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(f"{name}:{node.lineno}: shell={ast.unparse(kw.value)}")
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            if (f.value.id, f.attr) in _BANNED:
                found.append(f"{name}:{node.lineno}: {f.value.id}.{f.attr}()")
            if f.attr in _SPAWNERS and f.value.id in ("subprocess", "asyncio") and node.args \
                    and isinstance(node.args[0], ast.Constant | ast.JoinedStr | ast.BinOp):
                found.append(f"{name}:{node.lineno}: {f.value.id}.{f.attr}() with a string command")
        if isinstance(f, ast.Attribute) and f.attr == "create_subprocess_shell":
            found.append(f"{name}:{node.lineno}: create_subprocess_shell()")
    return found


def test_checker_catches_what_it_should() -> None:
    bad = ("import os, subprocess\nsubprocess.run('ls', shell=True)\nos.system('x')\n"
           "subprocess.Popen(f'ls {x}')\nsubprocess.run(['a'], shell=flag)\n")
    assert len(violations(bad, "bad.py")) == 5
    assert violations("import subprocess\nsubprocess.run(['ls'], shell=False)\n", "ok.py") == []


def test_no_shell_anywhere_in_the_repository() -> None:
    files = _python_files()
    assert len(files) > 100
    found = [v for p in files for v in violations(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert found == [], "\n".join(found)


# --------------------------------------------------------------------------------------------------
# Runtime checker


class Audit:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.problems: list[str] = []

    def check(self, args: Any, kwargs: dict[str, Any]) -> None:
        if kwargs.get("shell"):
            self.problems.append(f"shell=True: {args!r}")
        if isinstance(args, str | bytes):
            self.problems.append(f"string command: {args!r}")
            return
        argv = [str(a) for a in args]
        self.calls.append(argv)
        exe = kwargs.get("executable") or argv[0]
        for piece in ("$(", "`", ";", "|", "&", "evil"):
            if piece in str(exe):
                self.problems.append(f"user text in argv[0]: {exe!r}")
                break


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> Audit:
    a = Audit()
    real = subprocess.Popen

    class CheckedPopen(real):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            a.check(args, kwargs)
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", CheckedPopen)
    return a


def test_vllm_launch_of_a_hostile_model_name(audit: Audit, fake_python: Path, tmp_path: Path) -> None:  # noqa: F811
    from engine_runner.engines.vllm_server import VllmServer

    keys = []
    for _ in range(2):
        cfg = _cfg("ok")
        cfg.model = HOSTILE
        srv = VllmServer(cfg, tmp_path / "srv.log", nvml=None)
        with srv:
            assert srv.base_url.startswith("http://127.0.0.1:")
            keys.append(srv.api_key)
    launches = [c for c in audit.calls if "vllm.entrypoints.openai.api_server" in c]
    assert len(launches) == 2 and audit.problems == [], audit.problems
    for argv, key in zip(launches, keys):
        assert argv[0] == str(fake_python)
        assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv.count("--host") == 1
        assert argv[argv.index("--api-key") + 1] == key and re.fullmatch(r"es-[A-Za-z0-9_-]{32}", key)
        assert argv[argv.index("--model") + 1] == HOSTILE  # one argv element, never parsed by a shell
        assert "--trust-remote-code" not in argv
    assert keys[0] != keys[1]
    assert not Path("/tmp/es-pwned").exists()


def test_nsys_import_of_a_hostile_file_name(audit: Audit, fake_nsys: Path, es_env: str,  # noqa: F811
                                            tmp_path: Path) -> None:
    from db.nsys_import import import_nsys

    rep = _report(tmp_path / "caps" / f"{HOSTILE}.nsys-rep")
    import_nsys([rep], url=es_env)
    nsys_calls = [c for c in audit.calls if Path(c[0]).name == "nsys"]
    assert any(c[1] == "export" for c in nsys_calls) and audit.problems == [], (audit.calls, audit.problems)
    assert any(c[-1] == str(rep) for c in nsys_calls)  # the name is one argument
    assert not Path("/tmp/es-pwned").exists()


def test_inline_bench_of_a_hostile_model_name(audit: Audit, es_env: str, tmp_path: Path) -> None:
    from db.store import add_model
    from engine_runner.cli import app

    m = add_model(save_plain(linear_model(3), tmp_path / "m.onnx"), HOSTILE, url=es_env)
    res = CliRunner().invoke(app, ["bench", str(m.id), "--iterations", "5", "--warmup", "1", "--warmup-s", "0",
                                   "--min-duration", "0", "--no-layers", "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    print("bench subprocesses:", audit.calls)
    assert audit.problems == [], audit.problems
    assert not Path("/tmp/es-pwned").exists()


# --------------------------------------------------------------------------------------------------
# Opt-ins


def test_vllm_argv_builder_binds_loopback_with_the_key() -> None:
    from engine_runner.engines.vllm_server import VllmServerConfig, build_command
    from profiles.errors import InputError

    cmd = build_command(VllmServerConfig(model="m"), sys.executable, 8000, "k")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--api-key") + 1] == "k"
    assert "--trust-remote-code" not in cmd
    with pytest.raises(InputError, match="--host"):
        build_command(VllmServerConfig(model="m", extra_args=["--ho", "0.0.0.0"]), sys.executable, 8000, "k")


def test_trust_remote_code_and_pickle_are_opt_in_and_recorded() -> None:
    from profiles.llm_spec import ServeBenchSpec
    from profiles.specs import ExportSpec
    from profiles.torch_spec import TorchOptions

    off = ServeBenchSpec.model_validate({"model": "m", "concurrency": [1]})
    assert off.trust_remote_code is False
    on = ServeBenchSpec.model_validate({"model": "m", "concurrency": [1], "trust_remote_code": True})
    # llm_serve stores spec.model_dump(mode="json") as runs.config["spec"]: the opt-in travels with the run
    assert on.model_dump(mode="json")["trust_remote_code"] is True
    assert ExportSpec.model_validate({"source": "x"}).allow_pickle is False
    assert TorchOptions.model_validate({}).allow_pickle is False


def test_llm_run_config_records_the_spec() -> None:
    """Guard the claim above: the run row's config carries the whole spec (source check of llm_serve)."""
    src = (REPO / "engine_runner" / "jobs" / "llm_serve.py").read_text()
    assert 'config={"spec": spec.model_dump(mode="json")}' in src
