"""Triton Model Analyzer metric tables: ``metrics-model-inference.csv`` and ``metrics-model-gpu.csv``
(``model-analyzer report`` / ``analyze`` CSV exports).

Columns: ``Model``, ``Batch``, ``Concurrency``, ``Model Config Path``, ``Instance Group``, ``Satisfies
Constraints`` and one column per metric whose header carries the unit: ``Throughput (infer/sec)``,
``p99 Latency (ms)`` (also ``Avg``/``p90``/``p95 Latency (ms)``, ``Server Queue (ms)``...), ``GPU Memory
Usage (MB)``, ``GPU Utilization (%)``, ``GPU Power Usage (W)``.

Units (model_analyzer ``perf_analyzer/perf_analyzer.py`` and ``record/types``): perf_analyzer reports
latencies in µs and Model Analyzer divides them by 1000, so the CSV's "(ms)" columns are milliseconds (the
header is right); throughput is inferences/s as perf_analyzer counts them (requests x batch size). GPU memory
"MB" is DCGM's framebuffer-used value (MiB with DCGM, 10^6 bytes with the remote monitor): stored x 10^6 as bytes.

Definitions: perf_analyzer's latency is client-side, request send to response received (no streaming):
stored as ``latency_ms`` (EngineScope's model-benchmark latency), not as an LLM E2E. Each (model, config,
batch) becomes one run; each concurrency one load point.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.llm_import.records import ImportedPoint, ImportedRun, make_stat, to_ms

TOOL = "model-analyzer"
_KEY_COLS = ("Model", "Batch", "Concurrency")
#: "<stat> Latency (unit)" column -> Stat field
_LAT = re.compile(r"^(avg|p50|p90|p95|p99)\s+latency\s*\((\w+)\)$", re.IGNORECASE)
#: other metric columns: header (lower case, unit stripped) -> (our scalar name, our unit, factor from the header's unit)
_SCALARS = {
    "throughput": ("throughput_per_s", "1/s"),
    "gpu memory usage": ("gpu_mem_used_bytes", "bytes"),
    "max gpu memory usage": ("gpu_mem_used_bytes", "bytes"),
    "gpu utilization": ("gpu_util_pct", "%"),
    "avg gpu utilization": ("gpu_util_pct", "%"),
    "gpu power usage": ("power_w", "W"),
    "avg gpu power usage": ("power_w", "W"),
    "ram usage": ("cpu_mem_used_bytes", "bytes"),
    "max ram usage": ("cpu_mem_used_bytes", "bytes"),
}
_MEM_FACTOR = {"mb": 1e6, "gb": 1e9, "kb": 1e3, "b": 1.0, "mib": 2**20, "gib": 2**30}
NOTES = [
    "Model Analyzer's latency columns are perf_analyzer's client-side request latency (µs converted to ms by "
    "Model Analyzer, checked in its perf_analyzer.py): stored as latency_ms, not as an LLM E2E",
    "throughput is inferences/s (requests x batch size, as perf_analyzer counts)",
    "GPU memory 'MB' stored as bytes x 10^6 (DCGM reports MiB: within 5%)",
]


def is_model_analyzer_csv(text: str) -> bool:
    """True when the CSV header has Model, Batch and Concurrency columns."""
    first = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    cols = [c.strip() for c in first.split(",")]
    return all(c in cols for c in _KEY_COLS)


def parse(text: str, path: Path) -> list[ImportedRun]:
    """A Model Analyzer metrics CSV -> runs (one per model, model config and batch), points per concurrency.

    Raises:
        ParseError: a missing key column, or a cell that is not a number (names the file, line and column).
    """
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ParseError(f"{path}: empty Model Analyzer CSV")
    header = [c.strip() for c in rows[0]]
    for c in _KEY_COLS:
        if c not in header:
            raise ParseError(f"{path}:1: column {c!r} is missing (a Model Analyzer metrics CSV has Model, Batch, Concurrency)")
    kind = "gpu" if any("gpu" in h.lower() for h in header) and not any(_LAT.match(h) for h in header) else "inference"
    runs: dict[tuple[str, str, int], ImportedRun] = {}
    for lineno, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise ParseError(f"{path}:{lineno}: {len(row)} cells, the header has {len(header)}")
        cell = dict(zip(header, (c.strip() for c in row)))

        def number(col: str, lineno: int = lineno, cell: dict[str, str] = cell) -> float:
            try:
                return float(cell[col])
            except ValueError:
                raise ParseError(f"{path}:{lineno}: column {col!r} is {cell[col]!r}, expected a number") from None

        batch = int(number("Batch"))
        conc = number("Concurrency")
        cfg = cell.get("Model Config Path") or cell["Model"]
        key = (cell["Model"], cfg, batch)
        if key not in runs:
            runs[key] = ImportedRun(tool=TOOL, tool_version=None, engine="triton",
                                    label=f"{cell['Model']} {cfg} batch {batch} (Model Analyzer {kind})",
                                    model=cell["Model"], notes=list(NOTES), batch_size=batch,
                                    meta={"model_config_path": cfg, "csv": kind,
                                          "instance_group": cell.get("Instance Group"),
                                          "max_batch_size": cell.get("Max Batch Size")})
        run = runs[key]
        pt = ImportedPoint(mode="concurrency", level=conc)
        lat: dict[str, float | None] = {}
        lat_unit = "ms"
        info: dict[str, Any] = {}
        for col in header:
            if col in ("Model", "Batch", "Concurrency", "Model Config Path"):
                continue
            m = _LAT.match(col)
            if m:
                stat, unit = m.group(1).lower(), m.group(2)
                lat["mean" if stat == "avg" else stat] = number(col)
                lat_unit = unit
                to_ms(1.0, unit, where=f"{path}:1: column {col!r}")  # an unknown unit fails here, naming the column
                continue
            hm = re.fullmatch(r"(.*?)\s*(?:\(([^)]*)\))?", col)
            name, unit = (hm.group(1).lower(), (hm.group(2) or "")) if hm else (col.lower(), "")
            if name in _SCALARS:
                ours, our_unit = _SCALARS[name]
                v = number(col)
                if our_unit == "bytes":
                    v *= _MEM_FACTOR.get(unit.lower(), 1e6)
                pt.scalars[ours] = (v, our_unit)
                run.metric_names[ours] = col
            else:
                info[col] = cell[col]
        if lat:
            pt.stats["latency_ms"] = make_stat(lat, source_unit=lat_unit, where=f"{path}:{lineno}")
            run.metric_names["latency_ms"] = ", ".join(c for c in header if _LAT.match(c))
        pt.info = info
        run.points.append(pt)
    for run in runs.values():
        run.points.sort(key=lambda p: p.level or 0.0)
    return list(runs.values())
