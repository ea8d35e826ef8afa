"""Parser of trtexec's stdout log (TensorRT 7 to 11).

What is read (all optional; a log cut short yields what it has):

- the banner ``&&&& RUNNING|PASSED|FAILED TensorRT.trtexec [TensorRT v101601] # <command>``;
- the option sections ``=== Model Options ===``, ``=== Build Options ===``, ``=== System Options ===``,
  ``=== Inference Options ===``, ``=== Reporting Options ===``, ``=== Device Information ===`` as
  ``{key: value}`` strings exactly as printed;
- ``TensorRT version: 10.16.1`` (``8003`` in 8.0);
- the performance summary in both formats:

  * TensorRT >= 8.0: ``=== Performance summary ===`` then ``Throughput: X qps`` and one line per metric,
    ``Latency: min = a ms, max = b ms, mean = c ms, median = d ms, percentile(90%) = e ms, ...``
    (metrics: Latency, End-to-End Host Latency (8.0 only), Enqueue Time, H2D Latency, GPU Compute Time,
    D2H Latency), ``Total Host Walltime: s``, ``Total GPU Compute Time: s``;
  * TensorRT 7.x: a title line (``Host Latency``, ``Enqueue Time``, ``GPU Compute``) followed by
    ``min: a ms (end to end b ms)``, ``max:``, ``mean:``, ``median:``, ``percentile: x ms at 99% (end
    to end y ms at 99%)``, ``throughput: N qps``, ``walltime: s``, ``total compute time: s`` (the format
    printed by TensorRT 7.x trtexec, e.g. in NVIDIA/TensorRT issue #2054);

- the ``--dumpProfile`` table ``=== Profile (N iterations ) ===`` (TensorRT >= 8.2 column order
  ``Time(ms) Avg.(ms) Median(ms) Time(%) Layer``; older ``Layer Time (ms) Avg. Time (ms) Time %``).

Metric keys (``MetricStats.metric``) and what they mean, as trtexec's verbose "Explanations of the
performance metrics" define them: ``latency`` = H2D + GPU compute + D2H of one query (host latency);
``end_to_end_host_latency`` = from H2D start to D2H end including queueing (8.0 and 7.x only);
``enqueue_time`` = host time to enqueue one query; ``h2d_latency``/``d2h_latency`` = copy time of the
inputs/outputs; ``gpu_compute_time`` = GPU time of one query. Throughput is queries (engine
executions, each of the engine's batch) per second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from profiles.errors import ParseError
from profiles.trtexec.version import TrtVersion

LINE_RE = re.compile(r"^(?:\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\]\s*)?\[([IWEV])\]\s?(.*)$")
BANNER_RE = re.compile(r"&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec(?: \[TensorRT (v\d+)\])?(?: \[b\d+\])? # (.*)$")
SECTION_RE = re.compile(r"^=== (.+?) ===\s*$")
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

#: Metric key of each printed metric label (both formats), see the module docstring.
METRIC_KEYS: dict[str, str] = {
    "latency": "latency",
    "host latency": "latency",
    "end-to-end host latency": "end_to_end_host_latency",
    "enqueue time": "enqueue_time",
    "h2d latency": "h2d_latency",
    "gpu compute time": "gpu_compute_time",
    "gpu compute": "gpu_compute_time",
    "d2h latency": "d2h_latency",
}

_STAT_RE = re.compile(rf"(min|max|mean|median|percentile\(({NUM})%\))\s*=\s*({NUM})\s*(ms|s|us)\b")
_UNIT_MS = {"ms": 1.0, "s": 1e3, "us": 1e-3}
_TRT7_STAT_RE = re.compile(
    rf"^(min|max|mean|median):\s*({NUM})\s*ms(?:\s*\(end to end\s*({NUM})\s*ms\))?\s*$"
)
_TRT7_PCT_RE = re.compile(
    rf"^percentile:\s*({NUM})\s*ms at\s*({NUM})%(?:\s*\(end to end\s*({NUM})\s*ms at\s*{NUM}%\))?\s*$"
)
_PROFILE_HEAD_RE = re.compile(r"^=== Profile \((\d+) iterations?\s*\) ===")


@dataclass(frozen=True)
class MetricStats:
    """One metric of a trtexec performance summary, in ms, exactly as printed.

    Attributes:
        metric: key (``latency``, ``end_to_end_host_latency``, ``enqueue_time``, ``h2d_latency``,
            ``gpu_compute_time``, ``d2h_latency``).
        label: the label as printed (``"GPU Compute Time"``).
        min/max/mean/median: ms, None when the log did not print it (e.g. a truncated line).
        percentiles: ``{percent: ms}`` for every ``percentile(P%)`` printed (``{99.0: ...}`` in 8.0).
    """

    metric: str
    label: str
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    median: float | None = None
    percentiles: dict[float, float] = field(default_factory=dict)

    def pct(self, q: float) -> float | None:
        """The printed ``q``-th percentile (ms), or the median for ``q == 50``; None when not printed."""
        if q == 50 and self.median is not None:
            return self.median
        return self.percentiles.get(float(q))


@dataclass(frozen=True)
class PerformanceSummary:
    """trtexec's performance summary.

    Attributes:
        metrics: metric key -> :class:`MetricStats` (ms).
        throughput_qps: queries (engine executions) per second.
        total_host_walltime_s / total_gpu_compute_time_s: seconds.
        format: ``"trt8"`` (``=== Performance summary ===`` lines) or ``"trt7"`` (title + ``min:`` lines).
    """

    metrics: dict[str, MetricStats]
    throughput_qps: float | None = None
    total_host_walltime_s: float | None = None
    total_gpu_compute_time_s: float | None = None
    format: Literal["trt8", "trt7"] = "trt8"


@dataclass(frozen=True)
class ProfileRow:
    """One layer of a trtexec per-layer profile (``--dumpProfile`` table or ``--exportProfile`` JSON).

    Times in ms: ``total_ms`` summed over the profiled iterations, ``avg_ms`` per iteration,
    ``median_ms`` per iteration (TensorRT >= 8.2), ``percentage`` of the summed layer time.
    """

    name: str
    total_ms: float | None
    avg_ms: float | None
    median_ms: float | None = None
    percentage: float | None = None


@dataclass
class TrtexecLog:
    """Everything read from one trtexec stdout log (see the module docstring).

    Attributes:
        version: TensorRT version (from ``TensorRT version:`` or the banner), None if absent.
        status: ``"PASSED"``, ``"FAILED"`` or None (no final banner: truncated or crashed).
        command: the trtexec command line from the banner.
        sections: ``{"Build Options": {"Precision": "FP32+FP16", ...}, ...}``; a key printed several
            times (``Input inference shape``) has its values joined with ``"; "``.
        performance: the summary, None when not printed (build only, ``--dumpProfile`` without
            ``--separateProfileRun``, failure).
        profile: rows of the ``--dumpProfile`` table (the ``Total`` row in ``profile_total``).
        profile_iterations: iterations the profile table averaged over.
        trace_queries: queries in the timing trace (``Timing trace has N queries over S s``), the
            sample count behind the performance summary.
    """

    version: TrtVersion | None = None
    status: Literal["PASSED", "FAILED"] | None = None
    command: str | None = None
    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    performance: PerformanceSummary | None = None
    profile: list[ProfileRow] = field(default_factory=list)
    profile_total: ProfileRow | None = None
    profile_iterations: int | None = None
    trace_queries: int | None = None
    notes: list[str] = field(default_factory=list)

    def option(self, section: str, key: str) -> str | None:
        """The value printed for ``key`` in ``=== section ===`` (e.g. ``("Build Options", "Precision")``)."""
        return self.sections.get(section, {}).get(key)

    @property
    def device_name(self) -> str | None:
        """``Selected Device`` of the Device Information section."""
        return self.option("Device Information", "Selected Device")

    @property
    def precision(self) -> str | None:
        """Build precision as printed (``FP32``, ``FP32+FP16``, ``FP32+INT8``...), None when the log
        has no Build Options (``--loadEngine`` runs of TensorRT >= 10 print none)."""
        return self.option("Build Options", "Precision")

    def flags(self) -> dict[str, str]:
        """The ``--flag[=value]`` arguments of the banner command (value ``""`` for bare flags)."""
        out: dict[str, str] = {}
        for tok in (self.command or "").split():
            if tok.startswith("--"):
                key, _, value = tok[2:].partition("=")
                out[key] = value
        return out

    def inference_shapes(self) -> dict[str, list[int]]:
        """Input shapes of the timed run: ``Input inference shape(s)`` (``name=AxB``; TensorRT 8.0 prints
        ``name:0=...``), else the ``Set shape of input tensor`` lines. Empty when ``model``."""
        raw = self.option("Inference Options", "Input inference shape") or ""
        return parse_shape_list(raw)

    def build_profile(self) -> dict[str, dict[str, list[int]]]:
        """Optimization profile of the build: ``{input: {"min", "opt", "max"}}`` from ``Input build shape``."""
        opts = self.sections.get("Build Options", {})
        raw = opts.get("Input build shape") or opts.get("Input build shape (profile 0)") or ""
        out: dict[str, dict[str, list[int]]] = {}
        for item in filter(None, (p.strip() for p in raw.split(";"))):
            name, _, dims = item.rpartition("=")
            parts = dims.split("+")
            if name and len(parts) == 3:
                out[_strip_binding_index(name)] = {k: _dims(v) for k, v in zip(("min", "opt", "max"), parts, strict=True)}
        return out


def _strip_binding_index(name: str) -> str:
    # TensorRT 8.0 prints "x:0" (binding index); later versions print the bare name.
    return re.sub(r":\d+$", "", name.strip())


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.strip().split("x") if d]


def parse_shape_list(raw: str) -> dict[str, list[int]]:
    """``{"x": [4, 1, 28, 28]}`` from trtexec's ``x=4x1x28x28`` (also ``x:0=...`` of 8.0; several
    inputs separated by ``,`` or ``; ``); items that are not shapes (``model``) are skipped."""
    out: dict[str, list[int]] = {}
    for item in filter(None, (p.strip() for p in re.split(r"[;,]", raw))):
        name, sep, dims = item.rpartition("=")
        if sep and re.fullmatch(r"\d+(x\d+)*", dims.strip()):
            out[_strip_binding_index(name)] = _dims(dims)
    return out


def split_line(raw: str) -> tuple[str | None, str]:
    """``(severity, message)`` of a log line: severity ``I``/``W``/``E``/``V`` or None for an
    unprefixed line (banners, continuation lines, other tools' output)."""
    m = LINE_RE.match(raw.rstrip("\r\n"))
    if m:
        return m.group(1), m.group(2)
    return None, raw.rstrip("\r\n")


def parse_metric_line(label: str, rest: str) -> MetricStats | None:
    """Parse ``min = a ms, max = b ms, ... percentile(99%) = e ms`` (TensorRT >= 8.0) for ``label``.

    Tolerant of a line cut short (keeps the complete ``key = value unit`` pairs). Returns None for
    a label that is not a latency metric.
    """
    key = METRIC_KEYS.get(label.strip().lower())
    if key is None:
        return None
    vals: dict[str, float] = {}
    pcts: dict[float, float] = {}
    for m in _STAT_RE.finditer(rest):
        v = float(m.group(3)) * _UNIT_MS[m.group(4)]
        if m.group(2) is not None:
            pcts[float(m.group(2))] = v
        else:
            vals[m.group(1)] = v
    return MetricStats(metric=key, label=label.strip(), min=vals.get("min"), max=vals.get("max"),
                       mean=vals.get("mean"), median=vals.get("median"), percentiles=pcts)


def _parse_profile_row(msg: str, numbers_first: bool) -> ProfileRow | None:
    parts = msg.split()
    if numbers_first:
        nums, name_parts = parts[:4], parts[4:]
        if len(nums) < 4 or not name_parts:
            return None
        try:
            total, avg, med, pct = (float(x) for x in nums)
        except ValueError:
            return None
        return ProfileRow(" ".join(msg.split(None, 4)[4:]).strip(), total, avg, med, pct)
    # TensorRT <= 8.0: "<layer name>   Time (ms)   Avg. Time (ms)   Time %"
    if len(parts) < 4:
        return None
    try:
        total, avg, pct = (float(x) for x in parts[-3:])
    except ValueError:
        return None
    name = msg.rstrip()
    for _ in range(3):
        name = name.rstrip()[: name.rstrip().rfind(" ")]
    return ProfileRow(name.strip(), total, avg, None, pct)


def parse_trtexec_log(text: str, source: str = "<log>") -> TrtexecLog:
    """Parse a trtexec stdout log (TensorRT 7 to 11) into a :class:`TrtexecLog`.

    Lines that are not trtexec's (nsys progress bars, shell prompts) are skipped.

    Raises:
        ParseError: the text contains nothing trtexec prints (names ``source``).
    """
    log = TrtexecLog()
    section: str | None = None
    in_perf = False
    trt7_title: str | None = None
    trt7: dict[str, dict[str, tuple[float, float | None]]] = {}
    trt7_pcts: dict[str, dict[float, tuple[float, float | None]]] = {}
    perf_metrics: dict[str, MetricStats] = {}
    perf: dict[str, float] = {}
    profile_numbers_first: bool | None = None
    in_profile = False
    recognised = False
    banner_version: str | None = None

    for raw in text.splitlines():
        b = BANNER_RE.search(raw)
        if b:
            recognised = True
            state, ver, cmd = b.groups()
            if ver:
                banner_version = ver
            if state in ("PASSED", "FAILED"):
                log.status = state  # type: ignore[assignment]
            log.command = log.command or cmd.strip()
            section, in_perf, in_profile = None, False, False
            continue
        sev, msg = split_line(raw)
        if "Error Code " in raw or (sev in ("E", "W") and (raw.startswith("[") and raw[1:2].isdigit() or "[TRT]" in msg)):
            recognised = True  # a failed run may print nothing but TensorRT errors
        if sev is None:
            continue
        stripped = msg.strip()
        sm = SECTION_RE.match(stripped)
        ph = _PROFILE_HEAD_RE.match(stripped)
        if ph:
            recognised = True
            log.profile_iterations = int(ph.group(1))
            in_profile, section, in_perf, profile_numbers_first = True, None, False, None
            continue
        if sm:
            recognised = True
            title = sm.group(1).strip()
            in_profile = False
            if title == "Performance summary":
                in_perf, section = True, None
            else:
                in_perf = False
                section = title
                log.sections.setdefault(section, {})
            continue
        if in_profile:
            if not stripped:
                in_profile = False
                continue
            if profile_numbers_first is None:
                profile_numbers_first = stripped.lower().startswith("time")
                continue
            row = _parse_profile_row(stripped, profile_numbers_first)
            if row is None:
                in_profile = False
            elif row.name == "Total":
                log.profile_total = row
            else:
                log.profile.append(row)
            continue
        tq = re.match(r"Timing trace has (\d+) queries", stripped)
        if tq:
            log.trace_queries = int(tq.group(1))
            continue
        if stripped.startswith("TensorRT version:"):
            recognised = True
            try:
                log.version = TrtVersion.parse(stripped.split(":", 1)[1])
            except ParseError:
                log.notes.append(f"unreadable version line: {stripped}")
            continue
        if in_perf and sev == "I":
            label, sep, rest = stripped.partition(":")
            if not sep:
                if not stripped:
                    continue
                in_perf = False
            else:
                lab = label.strip()
                if lab == "Throughput":
                    m = re.match(rf"\s*({NUM})\s*qps", rest)
                    if m:
                        perf["throughput_qps"] = float(m.group(1))
                    continue
                if lab in ("Total Host Walltime", "Total GPU Compute Time"):
                    m = re.match(rf"\s*({NUM})\s*s\b", rest)
                    if m:
                        perf["total_host_walltime_s" if lab.startswith("Total Host") else "total_gpu_compute_time_s"] = float(m.group(1))
                    continue
                ms = parse_metric_line(lab, rest)
                if ms is not None:
                    perf_metrics[ms.metric] = ms
                    continue
                if lab.startswith("Explanations"):
                    in_perf = False
                continue
        # TensorRT 7.x summary: a title line alone, then "min: ..." lines.
        if sev == "I" and stripped in ("Host Latency", "Enqueue Time", "GPU Compute"):
            trt7_title = stripped
            trt7.setdefault(trt7_title, {})
            trt7_pcts.setdefault(trt7_title, {})
            recognised = True
            section = None
            continue
        if trt7_title is not None and sev == "I":
            m7 = _TRT7_STAT_RE.match(stripped)
            if m7:
                trt7[trt7_title][m7.group(1)] = (float(m7.group(2)), float(m7.group(3)) if m7.group(3) else None)
                continue
            p7 = _TRT7_PCT_RE.match(stripped)
            if p7:
                trt7_pcts[trt7_title][float(p7.group(2))] = (float(p7.group(1)), float(p7.group(3)) if p7.group(3) else None)
                continue
            low = stripped.lower()
            m = re.match(rf"throughput:\s*({NUM})\s*qps", low)
            if m:
                perf["throughput_qps"] = float(m.group(1))
                continue
            m = re.match(rf"walltime:\s*({NUM})\s*s", low)
            if m:
                perf["total_host_walltime_s"] = float(m.group(1))
                continue
            m = re.match(rf"total compute time:\s*({NUM})\s*s", low)
            if m:
                perf["total_gpu_compute_time_s"] = float(m.group(1))
                continue
            trt7_title = None
        if section is not None and sev == "I":
            if not stripped:
                if section != "Device Information" or log.sections[section]:
                    section = None
                continue
            key, sep, value = msg.partition(":")
            if sep and key.strip():
                k = key.strip()
                v = value.strip()
                prev = log.sections[section].get(k)
                log.sections[section][k] = f"{prev}; {v}" if prev else v
            continue

    if log.version is None and banner_version:
        log.version = TrtVersion.parse(banner_version)
    if perf_metrics:
        log.performance = PerformanceSummary(metrics=perf_metrics, format="trt8", **perf)
    elif trt7:
        log.performance = PerformanceSummary(metrics=_trt7_metrics(trt7, trt7_pcts), format="trt7", **perf)
    if not recognised:
        raise ParseError(f"{source}: not a trtexec log (no '&&&& RUNNING TensorRT.trtexec' banner, option sections, "
                         "performance summary, profile table or TensorRT error lines)")
    return log


def _trt7_metrics(trt7: dict[str, dict[str, tuple[float, float | None]]],
                  trt7_pcts: dict[str, dict[float, tuple[float, float | None]]]) -> dict[str, MetricStats]:
    out: dict[str, MetricStats] = {}
    for title, vals in trt7.items():
        key = METRIC_KEYS[title.lower()]
        main: dict[str, float | None] = {}
        e2e: dict[str, float | None] = {}
        for stat in ("min", "max", "mean", "median"):
            if stat in vals:
                main[stat], e2e[stat] = vals[stat]
        pcts = trt7_pcts.get(title, {})
        out[key] = MetricStats(metric=key, label=title, percentiles={q: p[0] for q, p in pcts.items()}, **main)
        if any(v is not None for v in e2e.values()):
            out["end_to_end_host_latency"] = MetricStats(
                metric="end_to_end_host_latency", label=f"{title} (end to end)",
                percentiles={q: p[1] for q, p in pcts.items() if p[1] is not None}, **e2e)
    return out
