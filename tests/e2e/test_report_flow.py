"""End to end: saved reports on real runs, in a real browser.

The fixture benchmarks a tiny ONNX MLP with the real CLI (``enginescope bench MODEL --precision fp32
--precision fp16 --precision int8-dynamic --repeats 3 --json``, few iterations) into a temporary
ENGINESCOPE_HOME and starts the dashboard (helpers of test_upload_flow). In Debian's Chromium the test then
saves a report with the fp32 baseline from the Compare page, reopens it from its URL in a new page (header,
verdicts and comparability list above the charts), downloads its HTML and opens that file with the network
off (offline context, every non-file request aborted) and asserts the Plotly charts drew (svg.main-svg) with
no failed request, and downloads the PDF (begins %PDF).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.conftest import make_mlp_onnx
from tests.e2e.test_upload_flow import CHROMIUM, CHROMIUM_ARGS, REPO, _enginescope_cmd, dashboard_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def bench_stack(tmp_path: Path) -> Iterator[dict]:
    """Real runs from ``enginescope bench --repeats 3`` in a temp home, and the dashboard serving it."""
    home = tmp_path / "es_home"
    home.mkdir()
    env = {**os.environ, "ENGINESCOPE_HOME": str(home), "ENGINESCOPE_DB_URL": f"sqlite:///{home / 'enginescope.db'}",
           "PYTHONUNBUFFERED": "1"}
    env.pop("ENGINESCOPE_DASHBOARD_URL", None)
    model = make_mlp_onnx(tmp_path / "tiny_mlp.onnx", hidden=64)
    out = subprocess.run([*_enginescope_cmd(), "bench", str(model), "--precision", "fp32", "--precision", "fp16",
                          "--precision", "int8-dynamic", "--repeats", "3", "--iterations", "30", "--warmup", "3",
                          "--warmup-s", "0", "--min-duration", "0.02", "--json"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    runs = {r["precision"]: int(r["run_id"]) for r in doc["runs"]}
    assert set(runs) == {"fp32", "fp16", "int8-dynamic"} and all(r["status"] == "succeeded" for r in doc["runs"])
    assert all(r["repeats"]["count"] == 3 for r in doc["runs"])
    with dashboard_server(env, tmp_path / "streamlit.log") as url:
        yield {"url": url, "home": home, "tmp": tmp_path, "runs": runs, "env": env, "job_id": int(doc["job_id"])}


def test_save_reopen_export_offline(bench_stack: dict) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set ENGINESCOPE_CHROMIUM)")
    from playwright.sync_api import expect, sync_playwright

    from db import reports

    url, tmp, runs = bench_stack["url"], bench_stack["tmp"], bench_stack["runs"]
    db_url = bench_stack["env"]["ENGINESCOPE_DB_URL"]
    failure_png = tmp / "failure.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        try:
            # Compare: verdicts vs the fp32 baseline before the charts, then "Save as report"
            page.goto(f"{url}/compare?job={bench_stack['job_id']}", timeout=60_000)
            expect(page.get_by_text("Verdicts vs a baseline")).to_be_visible()
            expect(page.locator(".st-key-compare_baseline input")).to_have_value(re.compile(r"fp32"))
            expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
            page.get_by_text("Save as report").click()
            title = page.locator(".st-key-compare_save_title input")
            title.fill("fp16 and int8 vs fp32 on CPU")
            page.locator(".st-key-compare_save_author input").fill("Ada")
            page.locator(".st-key-compare_save_notes textarea").fill("Real runs, 3 repeats each.")
            page.get_by_role("button", name="Save report").click()
            expect(page.get_by_text("Saved report 1")).to_be_visible()
            saved = reports.list_reports(db_url)
            assert len(saved) == 1 and saved[0]["baseline_run_id"] == runs["fp32"]
            assert saved[0]["run_ids"] == sorted(saved[0]["run_ids"], key=lambda i: list(runs.values()).index(i))
            assert set(saved[0]["run_ids"]) == set(runs.values()) and saved[0]["author"] == "Ada"

            # reopen from its URL in a new page: header, verdicts, comparability, then the charts
            page2 = context.new_page()
            page2.goto(f"{url}/reports?report={saved[0]['id']}", timeout=60_000)
            heading = page2.get_by_role("heading", name="fp16 and int8 vs fp32 on CPU")
            expect(heading).to_be_visible()
            expect(page2.get_by_text("Author: Ada", exact=False)).to_be_visible()
            expect(page2.get_by_text("Real runs, 3 repeats each.")).to_be_visible()
            charts = page2.locator('[data-testid="stPlotlyChart"]')
            expect(charts).to_have_count(3)
            verdicts_y = page2.get_by_role("heading", name="Verdicts").bounding_box()
            comp_y = page2.get_by_role("heading", name="Comparability").bounding_box()
            chart_y = charts.first.bounding_box()
            assert verdicts_y and comp_y and chart_y and verdicts_y["y"] < comp_y["y"] < chart_y["y"]

            with page2.expect_download() as dl:
                page2.get_by_role("button", name="HTML (self-contained)").click()
            html_path = tmp / "report.html"
            dl.value.save_as(str(html_path))
            page2.get_by_role("button", name="Make PDF").click()
            with page2.expect_download(timeout=120_000) as dl_pdf:
                page2.get_by_role("button", name="PDF", exact=True).click(timeout=120_000)
            pdf_path = tmp / "report.pdf"
            dl_pdf.value.save_as(str(pdf_path))
        except BaseException:
            for p in context.pages:
                p.screenshot(path=str(failure_png), full_page=True)
            print(f"screenshot of the failure: {failure_png}")
            raise
        assert pdf_path.read_bytes().startswith(b"%PDF-")
        doc = html_path.read_text(encoding="utf-8")
        assert "fp16 and int8 vs fp32 on CPU" in doc and doc.index("id='comparability'") < doc.index("<script")

        # the HTML file with the network off: every chart draws from the inline plotly.js
        offline = browser.new_context(offline=True)
        failed: list[str] = []
        requested: list[str] = []
        def only_files(route) -> None:  # type: ignore[no-untyped-def]
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                requested.append(route.request.url)
                route.abort()

        offline.route("**/*", only_files)
        view = offline.new_page()
        view.on("requestfailed", lambda r: failed.append(r.url))
        errors: list[str] = []
        view.on("pageerror", lambda e: errors.append(str(e)))
        view.goto(html_path.as_uri(), wait_until="load")
        for name in ("latency_p50", "latency_distribution", "throughput"):
            expect(view.locator(f"#chart-{name} svg.main-svg").first).to_be_attached(timeout=30_000)
        assert view.locator("svg.main-svg").count() >= 3
        assert view.locator("#verdicts").count() == 1 and view.locator("table.verdicts tbody tr").count() == 2
        assert failed == [] and requested == [] and errors == []
        offline.close()
        browser.close()
