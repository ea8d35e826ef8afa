"""Load test (issue 12): browsers on the dashboard while two workers drain a queue.

What it does, on a fresh ``ENGINESCOPE_HOME`` (SQLite in WAL mode):

1. seeds runs to browse: the stored H200 vLLM sweep (``tests/data/h200_vllm_sweep.db``, copied, never
   touched) for the LLM page, and one real in-process ``enginescope bench`` of a tiny ONNX MLP
   (fp32 + fp16, per-layer profile) for Compare and Layers;
2. queues ``--jobs`` jobs (default 50) alternating over two device lanes ``cpu:0`` / ``cpu:1`` and over two
   real job kinds: ``model_bench`` of the tiny MLP (a batch sweep 1/2/4/8, per-layer profile: the sweep
   that writes while pages are read) and ``clock_check``;
3. starts the dashboard (``streamlit run dashboard/app.py`` on a free port, through a launcher that times
   every script run server-side, see *Page server time*) and ``--contexts`` (default 8) Playwright browser
   contexts of one headless Debian Chromium, each looping over Compare, Layers and LLM serving;
4. after a warm-up lap per context, starts two ``enginescope worker --device cpu:N`` processes, each
   pinned with ``taskset -c N`` to core N (one device each; the children inherit the affinity), and keeps
   browsing until every job has ended;
5. checks every job: ``succeeded``; exactly one ``claimed by`` event, by the worker of its lane; its runs
   complete (model_bench: one succeeded run per batch size, each with its raw samples, a summary over
   exactly that many samples and per-layer rows; clock_check: one run, samples = summary count); no two
   jobs of one device overlapped in time; ``PRAGMA integrity_check`` = ok;
6. prints the figures and, with ``--write-results``, replaces its section of ``benchmarks/RESULTS.md``.

Page server time (the target: p95 < 1 s while the sweep writes) is the wall time of one Streamlit script
run in the server process: ``ScriptRunner._run_script`` wrapped with ``time.perf_counter_ns`` (from the
moment the script thread starts the run to the moment the last element of the page has been produced and
the run has finished, so it includes every DB query and figure the page builds, and GIL waits behind the
other sessions' runs, but not the websocket transfer or the browser's rendering). One page load = one full
(non-fragment) script run; fragment reruns (``run_every`` polling) are counted separately. Only runs that
started while the workers were running count. The client-side time (``page.goto`` until the page's title is
visible and ``stApp`` reports ``data-test-script-state=notRunning``) is reported beside it: it includes
Chromium's own CPU time on the same cores.

Usage: ``.venv/bin/python benchmarks/load_test.py [--jobs 50] [--contexts 8] [--write-results]``.
``run_load()`` is also what ``tests/reliability/test_load.py`` calls with a small configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
H200_DB = REPO / "tests" / "data" / "h200_vllm_sweep.db"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
CHROMIUM = os.environ.get("ENGINESCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage"]
#: (URL path, the page's st.title) of the pages browsed
PAGES = [("compare", "Compare runs"), ("layers", "Layers"), ("llm", "LLM serving")]
MARK_START, MARK_END = "<!-- load_test:start -->", "<!-- load_test:end -->"
TIMER_ENV = "ENGINESCOPE_LOADTEST_TIMINGS"


# ---------------------------------------------------------------------------------------------------
# the timed Streamlit launcher: python benchmarks/load_test.py --serve ARGS... == streamlit ARGS...


def _serve_timed(argv: list[str]) -> None:
    """Wrap ``ScriptRunner._run_script`` to append one JSON line per script run to ``$TIMER_ENV``, then
    hand over to Streamlit's own CLI (``streamlit run ...``)."""
    from streamlit.runtime.scriptrunner import script_runner as sr
    from streamlit.web import cli

    out = open(os.environ[TIMER_ENV], "a", buffering=1)  # noqa: SIM115 - lives as long as the server
    lock = threading.Lock()
    orig = sr.ScriptRunner._run_script

    def timed(self: Any, rerun_data: Any) -> None:
        t0 = time.perf_counter_ns()
        try:
            orig(self, rerun_data)
        finally:
            rec = {"start_ns": t0, "dur_ns": time.perf_counter_ns() - t0, "page": rerun_data.page_name or "",
                   "fragment": bool(rerun_data.fragment_id_queue), "session": getattr(self, "_session_id", "")}
            with lock:
                out.write(json.dumps(rec) + "\n")

    sr.ScriptRunner._run_script = timed  # type: ignore[method-assign]
    sys.argv = ["streamlit", *argv]
    cli.main()


# ---------------------------------------------------------------------------------------------------
# set-up


@dataclass
class LoadConfig:
    jobs: int = 50
    contexts: int = 8
    sweep_batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    bench_iterations: int = 30
    clock_duration_s: float = 1.0
    clock_samples: int = 20_000
    job_timeout_s: float = 1800.0     # deadline for the whole queue (a failure, not a measurement)
    page_timeout_ms: int = 120_000    # one page load (a failure, not a measurement)
    home: Path | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "ENGINESCOPE_HOME": str(home), "ENGINESCOPE_DB_URL": f"sqlite:///{home / 'enginescope.db'}",
            "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine_runner.cli", *args]


def tiny_mlp(path: Path, hidden: int = 64) -> Path:
    """A 3-layer MLP ``x[batch, 16] -> y[batch, 4]`` with a symbolic batch dim (7 nodes: layers to show)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, prev, width = [], [], "x", 16
    for i, out_w in enumerate([hidden, hidden, 4]):
        inits += [numpy_helper.from_array(rng.standard_normal((width, out_w)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(out_w).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"fc{i}/MatMul"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}" if i < 2 else "y"], name=f"fc{i}/Add")]
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"))
        prev, width = f"r{i}", out_w
    graph = helper.make_graph(nodes, "mlp3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="enginescope-load")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _seed(home: Path, env: dict[str, str], model: Path) -> None:
    shutil.copy(H200_DB, home / "enginescope.db")
    subprocess.run(_cli("migrate"), env=env, cwd=REPO, check=True, timeout=300, stdout=subprocess.DEVNULL)
    subprocess.run(_cli("bench", str(model), "--precision", "fp32", "--precision", "fp16", "--batch", "1",
                        "--warmup", "2", "--warmup-s", "0", "--iterations", "30", "--min-duration", "0", "--quiet"),
                   env=env, cwd=REPO, check=True, timeout=600, stdout=subprocess.DEVNULL)


def _queue(cfg: LoadConfig, url: str, model: Path) -> dict[int, dict[str, Any]]:
    """Queue ``cfg.jobs`` jobs alternating lanes cpu:0/cpu:1 and kinds model_bench/clock_check."""
    from db import jobs as q
    from engine_runner.commands.bench import resolve_model
    from profiles.specs import BenchSpec, validate_spec

    model_id = resolve_model(str(model), url)
    bench = validate_spec(BenchSpec, {
        "model_id": model_id, "engine": "onnxruntime", "device": "cpu", "precisions": ["fp32"],
        "batch_sizes": cfg.sweep_batches, "warmup_iterations": 2, "warmup_s": 0.0,
        "iterations": cfg.bench_iterations, "min_duration_s": 0.0, "profile_layers": True}).model_dump(mode="json")
    clock = {"duration_s": cfg.clock_duration_s, "samples": cfg.clock_samples}
    queued: dict[int, dict[str, Any]] = {}
    for i in range(cfg.jobs):
        lane = f"cpu:{i % 2}"
        kind = "model_bench" if (i // 2) % 2 == 0 else "clock_check"
        jid = q.submit_job(kind, bench if kind == "model_bench" else clock, device=lane,
                           model_id=model_id if kind == "model_bench" else None, timeout_s=600, origin="cli", url=url)
        queued[jid] = {"kind": kind, "device": lane}
    return queued


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text.strip() == "ok":
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"dashboard not healthy on port {port} after {timeout_s} s")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM the process group we started (start_new_session), SIGKILL after ``timeout_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------------
# browsing


@dataclass
class PageLoad:
    context: int
    page: str
    start_ns: int
    client_ns: int
    exception: str | None   # text of an st.exception / error element, if the page showed one
    measured: bool          # started while the workers ran


async def _browse(url: str, cfg: LoadConfig, state: dict[str, Any], loads: list[PageLoad]) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            async def one(ci: int) -> None:
                context = await browser.new_context(viewport={"width": 1400, "height": 1000})
                page = await context.new_page()
                page.set_default_timeout(cfg.page_timeout_ms)
                lap = 0
                try:
                    while not state["done"]:
                        lap_measured = state["measuring"]
                        for k in range(len(PAGES)):
                            path, title = PAGES[(k + ci) % len(PAGES)]  # contexts start on different pages
                            measured = state["measuring"]
                            t0 = time.perf_counter_ns()
                            await page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                            await page.get_by_role("heading", name=title).first.wait_for(state="visible")
                            await page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
                            dt_ns = time.perf_counter_ns() - t0
                            exc = page.locator('[data-testid="stException"]')
                            text = (await exc.first.inner_text())[:300] if await exc.count() else None
                            loads.append(PageLoad(ci, path, t0, dt_ns, text, measured and not state["done"]))
                        lap += 1
                        state["laps"][ci] = lap
                        if lap_measured:
                            state["laps_measured"][ci] += 1
                finally:
                    await context.close()

            await asyncio.gather(*(one(i) for i in range(cfg.contexts)))
        finally:
            await browser.close()


# ---------------------------------------------------------------------------------------------------
# checks


def _clock_sample_count(duration_s: float, samples: int) -> int:
    """How many deltas a clock_check stores: whole bursts (engine_runner/jobs/clock_check.py's rule)."""
    import math

    from engine_runner.jobs.clock_check import BURST_PERIOD_S

    n_bursts = max(1, min(samples // 2, math.ceil(duration_s / BURST_PERIOD_S)))
    return n_bursts * math.ceil(samples / n_bursts)


def check_jobs(url: str, queued: dict[int, dict[str, Any]], lane_workers: dict[str, str],
               sweep_batches: list[int], clock_duration_s: float, clock_samples: int) -> dict[str, Any]:
    """Every queued job's end state, claims, rows and device exclusivity; returns the findings."""
    from sqlalchemy import func, select

    from db.models import Job, JobEvent, LatencySample, LayerTiming, Run, Summary
    from db.session import session_scope, sqlite_path

    problems: list[str] = []
    want_clock = _clock_sample_count(clock_duration_s, clock_samples)
    statuses: Counter[str] = Counter()
    claims_per_job: dict[int, int] = {}
    intervals: dict[str, list[tuple[dt.datetime, dt.datetime, int]]] = {}
    with session_scope(url) as s:
        for jid, meta in queued.items():
            j = s.get(Job, jid)
            if j is None:
                problems.append(f"job {jid} lost (no row)")
                continue
            statuses[j.status] += 1
            if j.status != "succeeded":
                problems.append(f"job {jid} ({meta['kind']}) {j.status}: {(j.error or '')[:200]}")
            claims = [e for e in s.execute(select(JobEvent).where(JobEvent.job_id == jid)).scalars()
                      if e.kind == "stage" and e.message.startswith("claimed by ")]
            claims_per_job[jid] = len(claims)
            if len(claims) != 1:
                problems.append(f"job {jid} claimed {len(claims)} times: {[c.message for c in claims]}")
            want = lane_workers.get(meta["device"])
            if want and j.worker_id and not j.worker_id.startswith(want):
                problems.append(f"job {jid} on {meta['device']} ran on {j.worker_id}, not that lane's worker {want}")
            if j.started_at and j.finished_at:
                intervals.setdefault(j.device, []).append((j.started_at, j.finished_at, jid))
            runs = list(s.execute(select(Run).where(Run.job_id == jid).order_by(Run.id)).scalars())
            if meta["kind"] == "model_bench":
                got = sorted(r.batch_size or 0 for r in runs)
                if got != sorted(sweep_batches):
                    problems.append(f"job {jid}: runs for batches {got}, expected {sorted(sweep_batches)}")
            elif len(runs) != 1:
                problems.append(f"job {jid}: {len(runs)} runs, expected 1")
            for r in runs:
                if r.status != "succeeded":
                    problems.append(f"job {jid} run {r.id} {r.status}: {r.error}")
                n = s.execute(select(func.count()).select_from(LatencySample).where(LatencySample.run_id == r.id)).scalar_one()
                counts = [c for (c,) in s.execute(select(Summary.count).where(Summary.run_id == r.id,
                                                                               Summary.point_id.is_(None)))]
                if n == 0 or n not in counts:
                    problems.append(f"job {jid} run {r.id}: {n} samples, summary counts {counts}")
                if meta["kind"] == "clock_check" and n != want_clock:
                    problems.append(f"job {jid} run {r.id}: {n} clock samples, expected {want_clock}")
                if meta["kind"] == "model_bench":
                    layers = s.execute(select(func.count()).select_from(LayerTiming).where(LayerTiming.run_id == r.id)).scalar_one()
                    if layers == 0:
                        problems.append(f"job {jid} run {r.id}: no per-layer rows")
    overlaps = []
    for device, iv in intervals.items():
        iv.sort()
        for (s0, e0, j0), (s1, _e1, j1) in zip(iv, iv[1:]):
            if s1 < e0:
                overlaps.append(f"{device}: job {j1} started before job {j0} ended")
    problems += overlaps
    path = sqlite_path(url)
    integrity = journal = None
    if path is not None:
        conn = sqlite3.connect(path)
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        finally:
            conn.close()
        if integrity != "ok":
            problems.append(f"PRAGMA integrity_check: {integrity}")
        if fk:
            problems.append(f"PRAGMA foreign_key_check: {fk[:5]}")
    return {"problems": problems, "statuses": dict(statuses), "lost": [p for p in problems if "lost" in p],
            "run_twice": [j for j, n in claims_per_job.items() if n > 1], "overlaps": overlaps,
            "integrity": integrity, "journal_mode": journal}


# ---------------------------------------------------------------------------------------------------
# the run


def _pct(xs: list[float], p: float) -> float | None:
    return float(np.percentile(xs, p)) if xs else None


def run_load(cfg: LoadConfig) -> dict[str, Any]:
    """Set up, browse while the workers drain the queue, check; returns figures and findings."""
    own_tmp = cfg.home is None
    home = Path(tempfile.mkdtemp(prefix="es-load-")) if cfg.home is None else cfg.home
    home.mkdir(parents=True, exist_ok=True)
    env = _env(home)
    url = env["ENGINESCOPE_DB_URL"]
    os.environ["ENGINESCOPE_HOME"], os.environ["ENGINESCOPE_DB_URL"] = str(home), url  # for db.* in this process
    from db.session import get_engine

    get_engine.cache_clear()
    model = tiny_mlp(home / "tiny_mlp3.onnx")
    _seed(home, env, model)
    queued = _queue(cfg, url, model)
    timings = home / "script_runs.jsonl"
    port = _free_port()
    logs = {n: open(home / f"{n}.log", "wb") for n in ("streamlit", "worker0", "worker1")}  # noqa: SIM115
    procs: list[subprocess.Popen[bytes]] = []
    load_before = os.getloadavg()
    state: dict[str, Any] = {"done": False, "measuring": False, "laps": [0] * cfg.contexts,
                             "laps_measured": [0] * cfg.contexts}
    loads: list[PageLoad] = []
    browse_error: list[BaseException] = []
    lane_workers: dict[str, str] = {}
    t_workers = t_end = 0
    try:
        app = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", "run", "dashboard/app.py",
                                "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                               env={**env, TIMER_ENV: str(timings)}, cwd=REPO, stdout=logs["streamlit"],
                               stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(app)
        _wait_healthy(port, app, home / "streamlit.log")

        def browse() -> None:
            try:
                asyncio.run(_browse(f"http://127.0.0.1:{port}", cfg, state, loads))
            except BaseException as exc:  # reported below
                browse_error.append(exc)
                state["done"] = True

        th = threading.Thread(target=browse, name="browsers", daemon=True)
        th.start()
        deadline = time.monotonic() + 600
        while min(state["laps"]) < 1 and not browse_error:  # warm-up: one lap of every context, not measured
            if time.monotonic() > deadline:
                raise TimeoutError("the browser contexts did not finish a warm-up lap in 600 s")
            time.sleep(0.2)
        if browse_error:
            raise browse_error[0]
        from db import jobs as q

        taskset = shutil.which("taskset")
        cores = sorted(os.sched_getaffinity(0))
        state["measuring"] = True
        t_workers = time.perf_counter_ns()
        for lane in (0, 1):
            pin = [taskset, "-c", str(cores[lane % len(cores)])] if taskset else []
            w = subprocess.Popen([*pin, *_cli("worker", "--device", f"cpu:{lane}", "--poll-interval", "0.5", "--grace", "5")],
                                 env=env, cwd=REPO, stdout=logs[f"worker{lane}"], stderr=subprocess.STDOUT,
                                 start_new_session=True)
            procs.append(w)
            lane_workers[f"cpu:{lane}"] = f"worker@{socket.gethostname()}:{w.pid}"
        deadline = time.monotonic() + cfg.job_timeout_s
        while True:
            open_jobs = [j for j in queued if (jj := q.get_job(j, url=url)) is None or jj.status in ("queued", "running")]
            if not open_jobs and not t_end:
                t_end = time.perf_counter_ns()  # the measured window ends with the last job
            # browse on until every context finished a lap begun after the workers started (so a fast queue
            # still has pages served during it); figures count only loads begun inside the window
            if (not open_jobs and min(state["laps_measured"]) >= 1) or browse_error:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(open_jobs)} job(s) still open after {cfg.job_timeout_s} s: {open_jobs[:10]}")
            for p in procs[1:]:
                if p.poll() is not None:
                    raise RuntimeError(f"a worker exited with {p.returncode}")
            time.sleep(0.5)
        state["done"] = True
        th.join(timeout=180)
        if browse_error:
            raise browse_error[0]
    finally:
        state["done"] = True
        for p in reversed(procs):
            _stop(p)
        for f in logs.values():
            f.close()
    load_after = os.getloadavg()
    found = check_jobs(url, queued, lane_workers, cfg.sweep_batches, cfg.clock_duration_s, cfg.clock_samples)
    runs = [json.loads(line) for line in timings.read_text().splitlines() if line.strip()]
    in_window = [r for r in runs if t_workers <= r["start_ns"] <= t_end]
    full = [r["dur_ns"] / 1e6 for r in in_window if not r["fragment"]]
    frag = [r["dur_ns"] / 1e6 for r in in_window if r["fragment"]]
    idle = [r["dur_ns"] / 1e6 for r in runs if r["start_ns"] < t_workers and not r["fragment"]]
    measured = [ld for ld in loads if ld.measured and t_workers <= ld.start_ns <= t_end]
    after_start = [ld for ld in loads if ld.start_ns >= t_workers]
    client = [ld.client_ns / 1e6 for ld in measured]
    window_s = (t_end - t_workers) / 1e9
    from db.session import session_scope
    from db.models import Job

    with session_scope(url) as s:
        js = [s.get(Job, j) for j in queued]
    starts = [j.started_at for j in js if j and j.started_at]
    ends = [j.finished_at for j in js if j and j.finished_at]
    span_s = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    per_page = {p: {"n": len(xs), "p50_ms": _pct(xs, 50), "p95_ms": _pct(xs, 95), "max_ms": max(xs) if xs else None}
                for p, _t in PAGES for xs in [[r["dur_ns"] / 1e6 for r in in_window if not r["fragment"] and r["page"] == p]]}
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "home": str(home), "window_s": window_s, "jobs_span_s": span_s,
        "jobs_per_min": (len(queued) / span_s * 60) if span_s else None,
        "page_loads": len(measured), "page_loads_after_workers_started": len(after_start), "pages_per_s": len(measured) / window_s if window_s else None,
        "server_ms": {"n": len(full), "p50": _pct(full, 50), "p95": _pct(full, 95), "p99": _pct(full, 99),
                      "max": max(full) if full else None},
        "server_per_page": per_page,
        "server_idle_ms": {"n": len(idle), "p50": _pct(idle, 50), "p95": _pct(idle, 95)},
        "fragment_ms": {"n": len(frag), "p50": _pct(frag, 50), "p95": _pct(frag, 95)},
        "client_ms": {"n": len(client), "p50": _pct(client, 50), "p95": _pct(client, 95), "max": max(client) if client else None},
        "page_exceptions": [f"{ld.page}: {ld.exception}" for ld in loads if ld.exception],
        "load_before": load_before, "load_after": load_after, **found,
    }
    result["target_met"] = result["server_ms"]["p95"] is not None and result["server_ms"]["p95"] < 1000.0
    if own_tmp and not found["problems"] and not result["page_exceptions"]:
        shutil.rmtree(home, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------------------------------
# the RESULTS.md section


def _machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    return {"cpu": cpu, "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable)", "mem": mem,
            "os": platform.platform(), "python": platform.python_version()}


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("streamlit", "playwright", "sqlalchemy", "onnxruntime", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{pkg} {version(pkg)}")
    out.append(f"SQLite {sqlite3.sqlite_version}")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out.append(subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip())
    return ", ".join(out)


def _f(x: float | None, nd: int = 0) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def results_section(res: dict[str, Any]) -> str:
    m, c = _machine(), res["config"]
    sv, cl, fr = res["server_ms"], res["client_ms"], res["fragment_ms"]
    lb, la = res["load_before"], res["load_after"]
    verdict = "**held**" if res["target_met"] else "**not met**"
    rows = "\n".join(f"| {p} | {v['n']} | {_f(v['p50_ms'])} | {_f(v['p95_ms'])} | {_f(v['max_ms'])} |"
                     for p, v in res["server_per_page"].items())
    problems = "; ".join(res["problems"][:10]) or "none"
    return f"""{MARK_START}
## Load: {c['contexts']} browser sessions while two workers run {c['jobs']} queued jobs

- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; script `benchmarks/load_test.py` (defaults).
- Machine: {m['cpu']}, {m['cores']}, {m['mem']}, no GPU; {m['os']}; Python {m['python']}.
- Versions: {_versions()}.
- Load average (1/5/15 min) before / after: {' '.join(f'{x:.2f}' for x in lb)} / {' '.join(f'{x:.2f}' for x in la)}. The machine is shared with other work.
- Set-up: SQLite in WAL mode (journal_mode={res['journal_mode']}), one Streamlit server, {c['contexts']} contexts of one headless Chromium looping over Compare, Layers and LLM serving (one warm-up lap each, not measured); the stored H200 vLLM sweep plus one in-process bench of a 3-layer MLP seeded before. Queue: {c['jobs']} jobs alternating lanes `cpu:0`/`cpu:1` and kinds `model_bench` (tiny MLP, batch sweep {c['sweep_batches']}, {c['bench_iterations']} iterations, per-layer profile) / `clock_check` ({c['clock_samples']} samples over {c['clock_duration_s']} s); two `enginescope worker --device cpu:N`, each pinned to core N with `taskset` (one device each). Browsers, server and workers share the same {m['cores'].split()[0]} cores.
- Page server time = wall time of one full Streamlit script run in the server (`ScriptRunner._run_script` timed with `perf_counter_ns`: from the start of the run to its end, every query and figure of the page included, websocket and browser rendering excluded), counted for runs that started while the workers ran. Client time = `page.goto` until the title is visible and `stApp` says `notRunning` (includes Chromium's CPU on the same cores).

| figure | value |
|---|---|
| measured window (workers started -> last job ended) | {_f(res['window_s'], 1)} s |
| page loads in the window / pages per s | {res['page_loads']} / {_f(res['pages_per_s'], 2)} |
| page server time p50 / p95 / p99 / max (n={sv['n']}) | {_f(sv['p50'])} / **{_f(sv['p95'])}** / {_f(sv['p99'])} / {_f(sv['max'])} ms |
| client page time p50 / p95 / max (n={cl['n']}) | {_f(cl['p50'])} / {_f(cl['p95'])} / {_f(cl['max'])} ms |
| page server time in the warm-up lap, workers not started yet (first loads included) p50 / p95 (n={res['server_idle_ms']['n']}) | {_f(res['server_idle_ms']['p50'])} / {_f(res['server_idle_ms']['p95'])} ms |
| fragment reruns p50 / p95 (n={fr['n']}) | {_f(fr['p50'])} / {_f(fr['p95'])} ms |
| jobs per minute (first claim -> last end: {_f(res['jobs_span_s'], 1)} s) | {_f(res['jobs_per_min'], 1)} |
| job statuses | {res['statuses']} |
| jobs lost / run twice / device overlaps | {len(res['lost'])} / {len(res['run_twice'])} / {len(res['overlaps'])} |
| pages that showed an exception | {len(res['page_exceptions'])} |
| PRAGMA integrity_check | {res['integrity']} |
| problems | {problems} |

Per page, server time (ms):

| page | n | p50 | p95 | max |
|---|---:|---:|---:|---:|
{rows}

Target p95 page server time < 1 s while the sweep writes: {verdict} (p95 = {_f(sv['p95'])} ms).
{MARK_END}
"""


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# EngineScope benchmark results\n"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section.rstrip("\n") + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve"]:
        _serve_timed(argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--contexts", type=int, default=8)
    ap.add_argument("--home", type=Path, default=None, help="ENGINESCOPE_HOME to create (default: a temp dir)")
    ap.add_argument("--write-results", action="store_true", help="replace this script's section of benchmarks/RESULTS.md")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures as JSON here")
    a = ap.parse_args(argv)
    res = run_load(LoadConfig(jobs=a.jobs, contexts=a.contexts, home=a.home))
    section = results_section(res)
    print(section)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str))
    if a.write_results:
        write_results(section)
    return 0 if not res["problems"] and not res["page_exceptions"] else 1


if __name__ == "__main__":
    sys.exit(main())
