"""Import trtexec outputs produced elsewhere (a GPU machine, CI, a colleague) as Runs.

Files are classified by content (not by name): a trtexec stdout log, ``--exportTimes``,
``--exportProfile``, ``--exportLayerInfo`` (names only or detailed), and the ``*.profile.metadata.json``
/ ``*.build.metadata.json`` that TREx's ``parse_trtexec_log.py`` writes from trtexec logs. They are
grouped by their common stem (``resnet.onnx.engine.{graph,profile,timing}.json`` and
``resnet.onnx.engine.log`` form one group); each group becomes one Run with

- ``source="import:trtexec"``, ``engine="tensorrt"``, ``engine_version`` from the log when present,
  ``precision`` from the log's Build Options/flags, else the layer formats;
- ``summaries`` copied as printed (``source="trtexec"``; percentiles other than 50/90/95/99 in
  ``extra``), or computed with ``profiles.stats`` from ``--exportTimes`` when no summary was printed;
- ``latency_samples`` from ``--exportTimes`` (``latencyMs``, integer ns);
- ``layer_timings`` (``op_type`` = TensorRT layer type, precision, tactic, ``details.inputs/outputs``
  with shapes, fused/Myelin layers kept as they are with a note);
- the files as ``artifacts`` (copied under ``ENGINESCOPE_HOME/artifacts/imports/``).

:func:`import_trtexec` is what ``enginescope import`` and the dashboard's import page call.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.config import home as data_home
from db.models import Artifact, LatencySample, LayerTiming, Run, RunMetric, Summary, utcnow
from db.session import session_scope
from profiles.files import sha256_file
from profiles.errors import InputError, ParseError
from profiles.stats import summarize
from profiles.trtexec import (
    Diagnosis,
    LayerInfoExport,
    MergedLayer,
    ProfileExport,
    TimesExport,
    TrtexecLog,
    diagnose,
    merge_layers,
    parse_layer_info,
    parse_profile,
    parse_times,
    parse_trtexec_log,
)
from profiles.trtexec.log import ProfileRow, parse_shape_list

KINDS = ("log", "times", "profile", "layers", "trex_profile_meta", "trex_build_meta")
ARTIFACT_KIND = {"log": "log", "times": "trtexec_times", "profile": "trtexec_profile", "layers": "trtexec_layers",
                 "trex_profile_meta": "trtexec_metadata", "trex_build_meta": "trtexec_metadata"}

#: Suffixes removed to find a file's group stem (longest first), case-insensitive.
_STEM_RE = re.compile(
    r"(?:[._-](?:profile|build)\.metadata\.json"
    r"|[._-](?:export)?(?:graph|profile|timing|times|layers?|layerinfo)(?:[._-](?:detailed|names_only|verbose))?\.json"
    r"|\.log|\.txt|\.json)$",
    re.I,
)

#: What the printed "Latency" covers (trtexec's own definitions, in its verbose log).
WINDOW_WITH_COPIES = "trtexec host latency per query: H2D copy + GPU compute + D2H copy"
WINDOW_NO_COPIES = "trtexec latency per query with --noDataTransfers: GPU compute only, no host-device copies"


@dataclass
class ImportGroup:
    """Files of one trtexec run, by kind (at most one file per kind)."""

    stem: str
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class ParsedGroup:
    """Parsed contents of an :class:`ImportGroup` (pure data, nothing written yet)."""

    group: ImportGroup
    log: TrtexecLog | None = None
    diagnosis: Diagnosis | None = None
    times: TimesExport | None = None
    profile: ProfileExport | None = None
    layers: LayerInfoExport | None = None
    trex_profile: dict[str, Any] | None = None
    trex_build: dict[str, Any] | None = None


def file_stem(path: Path) -> str:
    """The group stem of a file name (``resnet.onnx.engine.graph.json`` -> ``resnet.onnx.engine``)."""
    name = path.name
    stem = _STEM_RE.sub("", name)
    return stem or name


def classify(path: Path, text: str) -> str:
    """Kind of a trtexec output file from its content (one of :data:`KINDS`).

    Raises:
        ParseError: not a trtexec output (names the file).
    """
    s = text.lstrip()
    if s.startswith("{") or s.startswith("["):
        try:
            data = json.loads(text, strict=False)
        except json.JSONDecodeError:
            if '"averageMs"' in text:
                return "profile"
            raise ParseError(f"{path}: invalid JSON and not a trtexec --exportProfile file") from None
        if isinstance(data, dict):
            if "Layers" in data:
                return "layers"
            if "performance_summary" in data or "inference_options" in data:
                return "trex_profile_meta"
            if "build_options" in data or "model_options" in data:
                return "trex_build_meta"
        if isinstance(data, list) and data and isinstance(data[0], dict):
            keys = set().union(*(d.keys() for d in data[:3] if isinstance(d, dict)))
            if "count" in keys or "averageMs" in keys:
                return "profile"
            if keys & {"latencyMs", "computeMs", "startEnqMs"}:
                return "times"
        raise ParseError(f"{path}: JSON that is not a trtexec export (--exportTimes/--exportProfile/--exportLayerInfo)")
    return "log"


def group_files(paths: Sequence[Path]) -> list[ImportGroup]:
    """Classify and group files by stem; a second file of the same kind and stem starts its own group.

    Raises:
        InputError: a path does not exist or is not a file (names it).
        ParseError: a file is not a trtexec output (names it).
    """
    groups: list[ImportGroup] = []
    by_stem: dict[str, list[ImportGroup]] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            raise InputError(f"{p}: is a folder; give the trtexec output files themselves (log, --exportTimes, "
                             "--exportProfile, --exportLayerInfo JSON)")
        if not p.is_file():
            raise InputError(f"{p}: no such file")
        kind = classify(p, p.read_text(errors="replace"))
        stem = file_stem(p)
        target = next((g for g in by_stem.get(stem, []) if kind not in g.files), None)
        if target is None:
            target = ImportGroup(stem=stem if stem not in by_stem else f"{stem} ({p.name})")
            by_stem.setdefault(stem, []).append(target)
            groups.append(target)
        target.files[kind] = p
    return groups


def parse_group(group: ImportGroup) -> ParsedGroup:
    """Parse every file of a group (pure).

    Raises:
        ParseError: a file cannot be parsed (names it).
    """
    pg = ParsedGroup(group=group)
    for kind, path in group.files.items():
        text = path.read_text(errors="replace")
        src = str(path)
        if kind == "log":
            pg.log = parse_trtexec_log(text, src)
            pg.diagnosis = diagnose(text)
        elif kind == "times":
            pg.times = parse_times(text, src)
        elif kind == "profile":
            pg.profile = parse_profile(text, src)
        elif kind == "layers":
            pg.layers = parse_layer_info(text, src)
        elif kind == "trex_profile_meta":
            pg.trex_profile = json.loads(text)
        elif kind == "trex_build_meta":
            pg.trex_build = json.loads(text)
    return pg


def precision_from_text(text: str | None) -> str | None:
    """Run precision from trtexec's printed ``Precision:`` (``FP32+FP16`` -> ``fp16``, ``FP32+INT8`` -> ``int8``...)."""
    if not text:
        return None
    t = text.upper()
    for token, name in (("FP8", "fp8"), ("INT8", "int8"), ("BF16", "bf16"), ("FP16", "fp16"), ("BEST", "best"), ("FP32", "fp32")):
        if token in t:
            return name
    return None


def precision_from_flags(flags: dict[str, str]) -> str | None:
    """Run precision from the trtexec command's flags (``--best`` > ``--fp8`` > ``--int8`` > ``--bf16`` > ``--fp16``)."""
    for flag, name in (("best", "best"), ("fp8", "fp8"), ("int8", "int8"), ("bf16", "bf16"), ("fp16", "fp16")):
        if flag in flags:
            return name
    return None


def precision_from_layers(layers: LayerInfoExport | None) -> str | None:
    """Run precision from layer formats: the lowest compute precision of non-reformat layers;
    ``int8-qdq`` when INT8 comes from Q/DQ (explicit quantization) layers."""
    if not layers or not layers.detailed:
        return None
    compute = [li for li in layers.layers if li.layer_type not in ("Reformat", "NoOp", "Shuffle", None) and li.precision]
    precs = {str(li.precision).split("->")[-1] for li in compute} | {str(li.precision).split("->")[0] for li in compute}
    has_qdq = any("Quantize" in li.name or (li.layer_type or "").startswith(("Quantize", "Dequantize")) for li in layers.layers)
    for p in ("fp8", "int8", "bf16", "fp16", "fp32"):
        if p in precs:
            return "int8-qdq" if p == "int8" and has_qdq else p
    return None


def _run_precision(pg: ParsedGroup) -> tuple[str | None, str | None]:
    if pg.log:
        p = precision_from_text(pg.log.precision) or precision_from_flags(pg.log.flags())
        if p:
            return p, "log"
    p = precision_from_layers(pg.layers)
    if p:
        return p, "layer formats"
    if pg.trex_build:
        p = precision_from_text((pg.trex_build.get("build_options") or {}).get("Precision"))
        if p:
            return p, "build metadata"
    return None, None


_TREX_METRICS = {"Latency": "latency", "Enqueue Time": "enqueue_time", "H2D Latency": "h2d_latency",
                 "GPU Compute Time": "gpu_compute_time", "D2H Latency": "d2h_latency"}


def summary_rows(pg: ParsedGroup) -> tuple[list[dict[str, Any]], float | None, str | None]:
    """``(summaries, throughput_per_s, timing_window)`` of a parsed group, as Summary column dicts.

    Printed summaries (log, or TREx metadata) win; without them, summaries are computed from
    ``--exportTimes`` with ``profiles.stats.summarize``.
    """
    rows: list[dict[str, Any]] = []
    throughput: float | None = None
    perf = pg.log.performance if pg.log else None
    no_copies = False
    if pg.log:
        no_copies = pg.log.option("Inference Options", "Data transfers") == "Disabled" or "noDataTransfers" in pg.log.flags()
    if perf:
        throughput = perf.throughput_qps
        count = pg.log.trace_queries if pg.log else None
        for key, m in perf.metrics.items():
            extra = {f"p{q:g}": v for q, v in m.percentiles.items() if q not in (90.0, 95.0, 99.0, 50.0)}
            rows.append({"metric": f"{key}_ms", "unit": "ms", "count": count or 0, "mean": m.mean, "min": m.min, "max": m.max,
                         "p50": m.median, "p90": m.pct(90), "p95": m.pct(95), "p99": m.pct(99),
                         "extra": extra, "source": "trtexec"})
    elif pg.trex_profile and pg.trex_profile.get("performance_summary"):
        ps = pg.trex_profile["performance_summary"]
        io = pg.trex_profile.get("inference_options") or {}
        no_copies = io.get("Data transfers") == "Disabled"
        throughput = float(ps["Throughput"]) if "Throughput" in ps else None
        for label, key in _TREX_METRICS.items():
            vals = ps.get(label)
            if not isinstance(vals, list) or len(vals) < 4:
                continue
            # TREx keeps the printed values in order: min, max, mean, median, then the percentiles;
            # one percentile = trtexec's default percentile(99%) before TensorRT 8.6, three = 90, 95, 99.
            pcts = vals[4:]
            p90, p95, p99 = (pcts + [None, None, None])[:3] if len(pcts) == 3 else (None, None, pcts[0] if pcts else None)
            rows.append({"metric": f"{key}_ms", "unit": "ms", "count": 0, "min": vals[0], "max": vals[1], "mean": vals[2],
                         "p50": vals[3], "p90": p90, "p95": p95, "p99": p99,
                         "extra": {"note": "from TREx profile.metadata.json (values as trtexec printed them)"},
                         "source": "trtexec"})
    elif pg.times and pg.times.records:
        for col, key in (("latencyMs", "latency"), ("computeMs", "gpu_compute_time"), ("h2dMs", "h2d_latency"),
                         ("d2hMs", "d2h_latency")):
            vals = pg.times.column(col)
            if vals:
                s = summarize(vals, "ms").as_dict()
                rows.append({**{k: s[k] for k in ("unit", "count", "mean", "std", "min", "max", "p50", "p90", "p95", "p99",
                                                  "median_ci_low", "median_ci_high")},
                             "metric": f"{key}_ms", "extra": {"from": "--exportTimes"}, "source": "computed"})
    if not rows:
        return rows, throughput, None
    if pg.times and pg.times.records and not no_copies:
        h2d = pg.times.column("h2dMs")
        no_copies = bool(h2d) and max(h2d) == 0 and max(pg.times.column("d2hMs") or [0]) == 0
    return rows, throughput, (WINDOW_NO_COPIES if no_copies else WINDOW_WITH_COPIES)


def layer_rows(pg: ParsedGroup) -> list[dict[str, Any]]:
    """LayerTiming column dicts: profile rows (JSON export, else the log's ``--dumpProfile`` table)
    joined with layer info by name; info-only layers keep null times."""
    profile_rows: list[ProfileRow] | None = None
    count: int | None = None
    src = None
    if pg.profile:
        profile_rows, count, src = pg.profile.rows, pg.profile.count, "--exportProfile"
    elif pg.log and pg.log.profile:
        profile_rows, count, src = pg.log.profile, pg.log.profile_iterations, "--dumpProfile table"
    merged: list[MergedLayer] = merge_layers(profile_rows, pg.layers)
    out = []
    for m in merged:
        info, t = m.info, m.timing
        details: dict[str, Any] = {"timing_source": src if t else None, "note": m.note}
        if info:
            details.update({
                "inputs": [x.as_dict() for x in info.inputs], "outputs": [x.as_dict() for x in info.outputs],
                "onnx_nodes": info.onnx_nodes, "layer_info": "detailed" if info.layer_type else "names only",
                "params": {k: v for k, v in info.params.items() if isinstance(v, (str, int, float, list)) and len(str(v)) < 500},
            })
        if pg.profile and pg.profile.tolerant:
            details["profile_parsed_tolerantly"] = True
        out.append({
            "idx": m.idx, "name": m.name, "op_type": info.layer_type if info else None,
            "precision": info.precision if info else None, "tactic": info.tactic if info else None,
            "avg_ms": t.avg_ms if t else None, "median_ms": t.median_ms if t else None,
            "total_ms": t.total_ms if t else None, "count": count if t else None,
            "percentage": t.percentage if t else None, "fused": m.fused, "details": details,
        })
    return out




def import_artifact_dir(home: Path, run_id: int) -> Path:
    """``<home>/artifacts/imports/run_<run_id>``, created: where every import (trtexec, nsys) copies its files."""
    dest = home / "artifacts" / "imports" / f"run_{run_id}"
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def import_group(pg: ParsedGroup, *, url: str | None = None, home: Path | None = None) -> dict[str, Any]:
    """Write one parsed group as a Run (short transactions) and return its ``--json`` record."""
    home = home or data_home()
    precision, precision_from = _run_precision(pg)
    sums, throughput, window = summary_rows(pg)
    layers = layer_rows(pg)
    log = pg.log
    diag = pg.diagnosis
    failed = bool(diag and diag.failed)
    device = (log.device_name if log else None) or ((pg.trex_profile or {}).get("device_information") or {}).get("Selected Device")
    version = str(log.version) if log and log.version else None
    config: dict[str, Any] = {
        "import": {"stem": pg.group.stem, "files": {k: p.name for k, p in pg.group.files.items()}},
        "precision_from": precision_from,
    }
    if log:
        config.update({"command": log.command, "flags": log.flags(), "sections": log.sections,
                       "build_profile": log.build_profile(), "status": log.status})
    if pg.trex_profile:
        config["trex_profile_metadata"] = {k: v for k, v in pg.trex_profile.items() if k != "performance_summary"}
    if pg.trex_build:
        config["trex_build_metadata"] = pg.trex_build
    if diag and (diag.errors or diag.warnings):
        config["diagnosis"] = {"headline": diag.headline, "suggestion": diag.suggestion,
                               "errors": [[c.text, c.count] for c in diag.errors],
                               "warnings": [[c.text, c.count] for c in diag.warnings],
                               "operator": diag.operator, "node_name": diag.node_name, "node_index": diag.node_index,
                               "shape_error": diag.shape_error}
    shapes = log.inference_shapes() if log else {}
    if not shapes and pg.trex_profile:
        shapes = parse_shape_list(str((pg.trex_profile.get("inference_options") or {}).get("Input inference shape", "")))
    batch = next((dims[0] for dims in shapes.values() if dims), None)  # first dim of the first input, as trtexec ran it
    with session_scope(url) as s:
        run = Run(engine="tensorrt", engine_version=version, precision=precision, batch_size=batch,
                  shapes=shapes, config=config,
                  environment={"gpu": device, "tensorrt": version, "where": "imported (measured elsewhere)"},
                  status="failed" if failed else "succeeded", error=(diag.headline if failed and diag else None),
                  source="import:trtexec", label=pg.group.stem, timing_window=window, finished_at=utcnow())
        s.add(run)
        s.flush()
        run_id = run.id
    with session_scope(url) as s:
        for row in sums:
            s.add(Summary(run_id=run_id, **row))
        if throughput is not None:
            s.add(RunMetric(run_id=run_id, name="throughput_per_s", value=throughput, unit="queries/s"))
        for row in layers:
            s.add(LayerTiming(run_id=run_id, **row))
    if pg.times and pg.times.records:
        samples = pg.times.latency_ns("latencyMs")
        with session_scope(url) as s:
            s.bulk_insert_mappings(LatencySample, [{"run_id": run_id, "seq": i, "latency_ns": v} for i, v in enumerate(samples)])  # type: ignore[arg-type]
    dest = import_artifact_dir(home, run_id)
    with session_scope(url) as s:
        for kind, path in pg.group.files.items():
            target = dest / path.name
            shutil.copyfile(path, target)
            s.add(Artifact(run_id=run_id, kind=ARTIFACT_KIND[kind], path=str(target.relative_to(home)),
                           content_hash=sha256_file(target), size_bytes=target.stat().st_size,
                           meta={"original_path": str(path), "import_kind": kind}))
    lat = next((r for r in sums if r["metric"] == "latency_ms"), None)
    return {
        "run_id": run_id, "source": "import:trtexec", "engine": "tensorrt", "engine_version": version,
        "precision": precision, "status": "failed" if failed else "succeeded",
        "label": pg.group.stem, "files": sorted(p.name for p in pg.group.files.values()),
        "latency_ms": {k: (lat.get(src) if lat else None) for k, src in
                       (("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("min", "min"), ("max", "max"))},
        "throughput_per_s": throughput,
        "timing_window": window,
        "layers": len(layers),
        "error": diag.headline if failed and diag else None,
    }


def import_trtexec(paths: Sequence[Path | str], *, url: str | None = None, home: Path | None = None) -> list[dict[str, Any]]:
    """Import trtexec output files (see the module docstring); returns one JSON record per Run.

    All files are parsed before anything is written, so a bad file leaves the database unchanged.

    Raises:
        InputError: no paths, or a path is missing (names it).
        ParseError: a file is not a trtexec output or cannot be parsed (names it).
    """
    if not paths:
        raise InputError("import: give at least one trtexec output file (log, --exportTimes/--exportProfile/--exportLayerInfo JSON)")
    parsed = [parse_group(g) for g in group_files([Path(p) for p in paths])]
    return [import_group(pg, url=url, home=home) for pg in parsed]
