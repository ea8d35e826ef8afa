"""``enginescope report create | list | export``: saved reports for team leads, from a terminal or CI.

A report is a set of stored runs judged against one of them (the baseline) on one metric, with a title,
author, notes and chosen charts (:mod:`db.reports`); the dashboard's Reports page opens it at
``${ENGINESCOPE_DASHBOARD_URL:-http://localhost:8501}/reports?report=ID``. Exports (self-contained HTML, PDF,
CSV, JSON) are the dashboard's own builders (:mod:`dashboard.report_export`; the CLI may use them: they are
pure functions of the DB rows). Exit status: 0, 2 for bad input (the message names the flag), 1 when an
export fails (e.g. no Chromium for the PDF). ``create`` stores nothing when it fails.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from engine_runner.commands import DB_URL_HELP

report_app = typer.Typer(help="Saved reports: runs judged against a baseline, opened on the dashboard's Reports page.",
                         no_args_is_help=True)



def _out_path(value: str | None, flag: str) -> Path | None:
    """``value`` as a writable file path (its folder must exist), or None."""
    from profiles.errors import InputError

    if value is None:
        return None
    p = Path(value).expanduser()
    if p.is_dir():
        raise InputError(f"{flag} {value}: is a folder; give a file name")
    if not p.parent.is_dir():
        raise InputError(f"{flag} {value}: folder {p.parent} does not exist")
    return p.resolve()


def _date(value: str | None, flag: str) -> dt.date | None:
    from profiles.errors import InputError

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{flag} {value!r}: give a date as YYYY-MM-DD") from None


def _write_exports(report_id: int, url: str | None, html: Path | None, pdf: Path | None, csv: Path | None,
                   json_file: Path | None) -> dict[str, str | None]:
    """Write the asked exports of report ``report_id``; ``{"html", "pdf", "csv", "json"}`` -> written path or None."""
    from dashboard import report_export as rx

    out: dict[str, str | None] = {"html": None, "pdf": None, "csv": None, "json": None}
    if not any((html, pdf, csv, json_file)):
        return out
    d = rx.collect(report_id, url)
    if pdf is not None:  # first: the one that can fail for want of a browser
        pdf.write_bytes(rx.build_pdf(d))
        out["pdf"] = str(pdf)
    if html is not None:
        html.write_text(rx.build_html(d), encoding="utf-8")
        out["html"] = str(html)
    if csv is not None:
        csv.write_text(rx.build_csv(d), encoding="utf-8")
        out["csv"] = str(csv)
    if json_file is not None:
        json_file.write_text(rx.build_json(d), encoding="utf-8")
        out["json"] = str(json_file)
    return out


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v


def register(app: typer.Typer) -> None:
    """Add the ``report`` group."""

    @report_app.command("create")
    def create_cmd(
        run: list[int] = typer.Option(None, "--run", help="run id to include (repeatable; bench --json and serve-bench "
                                      "--json print them), in display order"),
        baseline: int = typer.Option(None, "--baseline", help="run id of the baseline (one of the --run runs)"),
        title: str = typer.Option(None, "--title", help="report title"),
        author: str = typer.Option(None, "--author", help="who saved it"),
        notes: str = typer.Option(None, "--notes", help="free text shown under the title"),
        metric: str = typer.Option(None, "--metric", help="latency_p50 | latency_p99 | throughput (model runs; default "
                                   "latency_p50) | ttft_p50 | ttft_p99 | tpot_p50 | tpot_p99 | e2e_p50 (LLM runs; "
                                   "default ttft_p99)"),
        chart: list[str] = typer.Option(None, "--chart", help="chart or table to show (repeatable; default all for the "
                                        "runs' kind): latency_p50, latency_distribution, throughput, accuracy (model "
                                        "runs); ttft_vs_load, tpot_vs_load, llm_throughput (LLM runs)"),
        allow_different: bool = typer.Option(False, "--allow-different", help="judge runs on different hardware or of "
                                             "different models instead of calling them not comparable"),
        html: str = typer.Option(None, "--html", help="also write the self-contained HTML (opens offline) to FILE"),
        pdf: str = typer.Option(None, "--pdf", help="also write the PDF to FILE (needs Chromium: apt-get install -y "
                                "chromium)"),
        csv: str = typer.Option(None, "--csv", help="also write the numbers as CSV to FILE"),
        as_json: bool = typer.Option(False, "--json", help="print JSON (the default and only output: {report_id, url, "
                                     "html, pdf, csv})"),
        db_url: str = typer.Option(None, "--db-url", help=DB_URL_HELP),
    ) -> None:
        """Save a report of --run runs against --baseline; print {"report_id", "url", "html", "pdf", "csv"}."""
        from db import reports
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError, InputError

        try:
            if not run:
                raise InputError("--run: give at least one run (bench --json and serve-bench --json print run ids)")
            if baseline is None:
                raise InputError("--baseline: name the baseline run (one of the --run runs)")
            if not title or not title.strip():
                raise InputError("--title: a report needs a title")
            paths = {"html": _out_path(html, "--html"), "pdf": _out_path(pdf, "--pdf"), "csv": _out_path(csv, "--csv")}
            if paths["pdf"] is not None:
                from dashboard.report_export import chromium_path

                if chromium_path() is None:
                    raise InputError("--pdf: PDF export needs a Chromium for kaleido: apt-get install -y chromium (or "
                                     "set ENGINESCOPE_CHROMIUM to a Chromium/Chrome executable)")
            migrate(db_url)
            rid = reports.create_report(run, baseline, title, author=author, notes=notes, metric=metric,
                                        charts=chart if chart else None, allow_different=allow_different, url=db_url)
        except EngineScopeError as exc:
            fail(exc)
            return
        try:
            written = _write_exports(rid, db_url, paths["html"], paths["pdf"], paths["csv"], None)
        except EngineScopeError as exc:
            reports.delete_report(rid, db_url)  # nothing stored when create fails
            fail(exc)
            return
        except OSError as exc:
            reports.delete_report(rid, db_url)
            fail(InputError(f"could not write an export: {exc}"))
            return
        typer.echo(json.dumps({"report_id": rid, "url": reports.report_url(rid), "html": written["html"],
                               "pdf": written["pdf"], "csv": written["csv"]}, indent=2))

    @report_app.command("list")
    def list_cmd(
        model: str = typer.Option(None, "--model", help="model name contains (case-insensitive)"),
        engine: str = typer.Option(None, "--engine", help="one of its runs has this engine"),
        precision: str = typer.Option(None, "--precision", help="one of its runs has this precision"),
        author: str = typer.Option(None, "--author", help="author contains (case-insensitive)"),
        since: str = typer.Option(None, "--since", help="created on or after this day (YYYY-MM-DD, UTC)"),
        until: str = typer.Option(None, "--until", help="created on or before this day (YYYY-MM-DD, UTC)"),
        as_json: bool = typer.Option(False, "--json", help="print the reports as a JSON list"),
        db_url: str = typer.Option(None, "--db-url", help=DB_URL_HELP),
    ) -> None:
        """List saved reports, newest first (every filter given must match)."""
        from db import reports
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError

        try:
            lo, hi = _date(since, "--since"), _date(until, "--until")
            migrate(db_url)
            found = reports.list_reports(db_url, model=model, engine=engine, precision=precision, author=author,
                                         since=lo, until=hi)
        except EngineScopeError as exc:
            fail(exc)
            return
        if as_json:
            typer.echo(json.dumps([{**{k: _jsonable(v) for k, v in r.items()}, "url": reports.report_url(r["id"])}
                                   for r in found], indent=2))
            return
        if not found:
            typer.echo("no reports")
            return
        for r in found:
            when = r["created_at"].strftime("%Y-%m-%d %H:%M") if r["created_at"] else "-"
            typer.echo(f"{r['id']:>5}  {when}  {r['author'] or '-':<16.16}  {r['title']}  "
                       f"({len(r['run_ids'])} runs: {', '.join(r['precisions'])}; {', '.join(r['models'])})  "
                       f"{reports.report_url(r['id'])}")

    @report_app.command("export")
    def export_cmd(
        report_id: int = typer.Argument(..., metavar="REPORT_ID", help="report id (report list prints them)"),
        html: str = typer.Option(None, "--html", help="write the self-contained HTML to FILE"),
        pdf: str = typer.Option(None, "--pdf", help="write the PDF to FILE (needs Chromium)"),
        csv: str = typer.Option(None, "--csv", help="write the numbers as CSV to FILE"),
        json_file: str = typer.Option(None, "--json-file", help="write the numbers as JSON to FILE"),
        db_url: str = typer.Option(None, "--db-url", help=DB_URL_HELP),
    ) -> None:
        """Write a saved report's exports; with no file option, print its JSON on stdout."""
        from dashboard import report_export as rx
        from db import reports
        from db.session import migrate
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError, InputError

        try:
            paths = [_out_path(html, "--html"), _out_path(pdf, "--pdf"), _out_path(csv, "--csv"),
                     _out_path(json_file, "--json-file")]
            migrate(db_url)
            if reports.get_report(report_id, db_url) is None:
                raise InputError(f"REPORT_ID: report {report_id} does not exist (report list prints ids)")
            if not any(paths):
                typer.echo(rx.build_json(rx.collect(report_id, db_url)))
                return
            written = _write_exports(report_id, db_url, *paths)
        except EngineScopeError as exc:
            fail(exc)
            return
        typer.echo(json.dumps({"report_id": report_id, "url": reports.report_url(report_id), **written}, indent=2))

    app.add_typer(report_app, name="report")
