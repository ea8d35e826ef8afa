"""End to end: a real browser drops an ONNX file on the dashboard, benchmarks it at fp32 + fp16 +
int8-dynamic through the real worker, and sees the comparison chart.

Starts ``enginescope worker`` and ``streamlit run dashboard/app.py`` on a free port with a temporary
ENGINESCOPE_HOME, and drives Debian's Chromium (``$ENGINESCOPE_CHROMIUM``, default /usr/bin/chromium;
``apt-get install -y chromium``) with Playwright's sync API. Never downloads a browser. Every wait is
bounded; on failure a screenshot is saved under the test's tmp dir (path printed in the failure).
Set ``ENGINESCOPE_E2E_SHOTS=<dir>`` to also save a screenshot of every step.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.dashboard.conftest import make_mlp_onnx

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ENGINESCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
START_TIMEOUT_S = 90
JOB_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _enginescope_cmd() -> list[str]:
    script = Path(sys.executable).parent / "enginescope"
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine_runner.cli"]


def _stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM the process group we started (start_new_session), then SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def dashboard_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free loopback port with ``env``, its output in ``log_path``;
    yields its base URL once ``/_stcore/health`` answers ok (at most :data:`START_TIMEOUT_S`), and stops its
    process group afterwards.

    Raises:
        RuntimeError: streamlit exited first (the log's tail in the message); TimeoutError: never healthy.
    """
    port = _free_port()
    with open(log_path, "wb") as log:
        app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                                "--server.address", "127.0.0.1", "--server.headless", "true",
                                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                               env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if app.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {app.returncode}: {log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text.strip() == "ok":
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dashboard not healthy on port {port} after {START_TIMEOUT_S} s")
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(app)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict]:
    """A migrated temp ENGINESCOPE_HOME, a running worker and a running dashboard; yields their info."""
    home = tmp_path / "es_home"
    home.mkdir()
    env = {**os.environ, "ENGINESCOPE_HOME": str(home), "ENGINESCOPE_DB_URL": f"sqlite:///{home / 'enginescope.db'}",
           "PYTHONUNBUFFERED": "1"}
    subprocess.run([*_enginescope_cmd(), "migrate"], env=env, cwd=REPO, check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    with open(tmp_path / "worker.log", "wb") as wlog:
        worker = subprocess.Popen([*_enginescope_cmd(), "worker", "--poll-interval", "0.5"], env=env, cwd=REPO,
                                  stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with dashboard_server(env, tmp_path / "streamlit.log") as url:
                yield {"url": url, "home": home, "tmp": tmp_path}
        finally:
            _stop(worker)


def _drop_files(page, selector: str, files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """A real drop: build a DataTransfer holding the files' bytes in the page and dispatch
    dragenter/dragover/drop on the dropzone (what a user's drag and drop does)."""
    payload = [[f.name, base64.b64encode(f.read_bytes()).decode()] for f in files]
    data_transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, {type: "application/octet-stream"}));
            }
            return dt;
        }""", payload)
    zone = page.locator(selector)
    for event in ("dragenter", "dragover", "drop"):
        zone.dispatch_event(event, {"dataTransfer": data_transfer})


def test_drag_drop_benchmark_compare(stack: dict) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set ENGINESCOPE_CHROMIUM)")
    from playwright.sync_api import expect, sync_playwright

    model = make_mlp_onnx(stack["tmp"] / "tiny_mlp.onnx", hidden=64)
    shots = Path(os.environ["ENGINESCOPE_E2E_SHOTS"]) if os.environ.get("ENGINESCOPE_E2E_SHOTS") else None
    failure_png = stack["tmp"] / "failure.png"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # the first render loads the element bundles: slow on 2 shared cores

        def shot(name: str) -> None:
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        try:
            page.goto(stack["url"], timeout=60_000)
            dropzone = '[data-testid="stFileUploaderDropzone"]'
            page.locator(dropzone).wait_for(state="visible", timeout=60_000)
            _drop_files(page, dropzone, [model])
            expect(page.get_by_text("Added model #1 tiny_mlp.onnx")).to_be_visible(timeout=60_000)
            # the inspection: opset, the symbolic batch dim of the input, operator counts
            expect(page.get_by_text("tiny_mlp.onnx").first).to_be_visible()
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Opset")).to_contain_text("17")
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Operators")).to_contain_text("4")
            shot("1_models")

            page.get_by_role("link", name="Benchmark this model").click()
            precisions = page.locator(".st-key-newbench_precisions_onnxruntime")
            precisions.wait_for(state="visible", timeout=30_000)
            for p in ("fp16", "int8-dynamic"):
                precisions.locator("input").click()
                page.keyboard.type(p)
                page.keyboard.press("Enter")
                expect(precisions).to_contain_text(p, timeout=15_000)
            page.keyboard.press("Escape")
            for key, value in (("newbench_iterations", "30"), ("newbench_warmup_iters", "3"),
                               ("newbench_warmup_s", "0.00"), ("newbench_min_duration", "0.20")):
                box = page.locator(f".st-key-{key} input")
                box.fill(value)
                box.press("Enter")
                expect(box).to_have_value(value, timeout=15_000)
            shot("2_new_benchmark")
            page.locator(".st-key-newbench_submit button").click()
            expect(page.get_by_text("Queued job 1")).to_be_visible(timeout=30_000)

            page.get_by_role("link", name="Follow job 1 on the Jobs page").click()
            status = page.get_by_text("Job 1: succeeded")
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while not status.is_visible():
                if page.get_by_text("Job 1: failed").is_visible() or page.get_by_text("Job 1: cancelled").is_visible():
                    shot("3_jobs_failed")
                    raise AssertionError("job 1 did not succeed: " + page.locator('[data-testid="stAlert"]').all_inner_texts().__str__())
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job 1 not finished after {JOB_TIMEOUT_S} s")
                page.wait_for_timeout(1000)
            shot("3_jobs")

            page.get_by_role("link", name="Compare the runs of this job").click()
            charts = page.locator('[data-testid="stPlotlyChart"]')
            expect(charts.first).to_be_visible(timeout=60_000)
            expect(charts).to_have_count(3, timeout=60_000)
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Fastest valid variant")).to_be_visible()
            expect(page.get_by_text("Timing window", exact=False).first).to_be_visible()
            page.wait_for_timeout(1500)  # let Plotly finish drawing for the screenshot
            shot("4_compare")
        except BaseException:
            page.screenshot(path=str(failure_png), full_page=True)
            print(f"screenshot of the failure: {failure_png}")
            raise
        finally:
            browser.close()
