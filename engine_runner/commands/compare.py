"""``enginescope compare BASELINE_RUN CANDIDATE_RUN``: the regression gate for CI pipelines.

The verdict (``profiles.verdict``) of the candidate run against the baseline run on one metric, with the 95%
interval from the runs' repeats. Exit status: 1 when the candidate is significantly worse than
``--max-regression`` allows (or its outputs failed the accuracy check where the baseline's passed); 2 for bad
input, and for a verdict of "not comparable" (other hardware or another model without ``--allow-different``,
or a side without samples to judge): a gate must not pass what it could not judge; 0 otherwise. The verdict
(text or ``--json``) is printed in every case but bad input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import typer

from engine_runner.commands import DB_URL_HELP


def _value(v: Any) -> str:
    return "-" if v is None else str(v)


def register(app: typer.Typer) -> None:
    """Add ``compare``."""

    @app.command("compare")
    def compare_cmd(
        baseline: int = typer.Argument(..., metavar="BASELINE_RUN", help="run id of the baseline (as bench --json "
                                       "and serve-bench --json print them)"),
        candidate: int = typer.Argument(..., metavar="CANDIDATE_RUN", help="run id of the candidate"),
        metric: str = typer.Option(None, "--metric", help="latency_p50 | latency_p99 | throughput (model runs; default "
                                   "latency_p50) | ttft_p50 | ttft_p99 | tpot_p50 | tpot_p99 | e2e_p50 (LLM runs; "
                                   "default ttft_p99)"),
        max_regression: float = typer.Option(0.0, "--max-regression", help="allowed slowdown in percent: exit 1 only "
                                             "when the whole 95% interval is beyond it"),
        level: str = typer.Option(None, "--level", help="LLM runs: the load level, e.g. 16 or concurrency=16 (needed "
                                  "when the runs share several)"),
        allow_different: bool = typer.Option(False, "--allow-different", help="compare runs on different hardware "
                                             "or of different models (when that is the point)"),
        as_json: bool = typer.Option(False, "--json", help="print the verdict as JSON: {metric, baseline, candidate, "
                                     "ratio, ci95, verdict, comparable, differences, ...}"),
        db_url: str = typer.Option(None, "--db-url", help=DB_URL_HELP),
    ) -> None:
        """Judge CANDIDATE_RUN against BASELINE_RUN: ratio, 95% interval, verdict; exit 1 on a regression."""
        from db.session import migrate
        from db.verdicts import compare_runs
        from engine_runner.cli import fail
        from profiles.errors import EngineScopeError, InputError
        from profiles.verdict import NOT_COMPARABLE, regression

        try:
            if not math.isfinite(max_regression) or max_regression < 0:
                raise InputError(f"--max-regression must be a finite percentage >= 0, got {max_regression}")
            migrate(db_url)
            v = compare_runs(baseline, candidate, metric, url=db_url, level=level, allow_different=allow_different)
            worse = regression(v, max_regression)
        except EngineScopeError as exc:
            fail(exc)
            return
        doc = v.as_dict()
        doc["max_regression_pct"] = max_regression
        doc["regression"] = worse
        if as_json:
            typer.echo(json.dumps(doc, indent=2, default=str))
        else:
            if v.differences:
                typer.echo("differences that could explain a gap:")
                for d in v.differences:
                    tag = "BLOCKS" if d.blocking else "      "
                    typer.echo(f"  {tag} {d.field}: {_value(d.baseline)} -> {_value(d.candidate)}"
                               + (f" ({d.note})" if d.note else ""))
            lvl = f" at {v.level}" if v.level else ""
            if v.baseline_value is not None and v.candidate_value is not None:
                typer.echo(f"{v.metric}{lvl}: baseline run {baseline} {v.baseline_value:.4g} {v.unit}, candidate run "
                           f"{candidate} {v.candidate_value:.4g} {v.unit}")
            typer.echo(v.summary)
            if v.accuracy:
                typer.echo(f"candidate accuracy: valid={v.accuracy.get('valid')} cosine_min="
                           f"{_value(v.accuracy.get('cosine_min'))} max_abs_err={_value(v.accuracy.get('max_abs_err'))}")
            for n in v.notes:
                typer.echo(f"note: {n}")
            typer.echo(f"regression beyond {max_regression:g}%: {'YES' if worse else 'no'}")
        if worse:
            raise typer.Exit(1)
        if v.verdict == NOT_COMPARABLE:
            why = "; ".join(f"{d.field} differs" for d in v.differences if d.blocking) or "; ".join(v.notes)
            typer.echo(f"error: runs {baseline} and {candidate} are not comparable ({why or 'no interval'}): the gate "
                       "cannot pass them" + (" (--allow-different if that is the point)"
                                             if any(d.blocking for d in v.differences) else ""), err=True)
            raise typer.Exit(2)
