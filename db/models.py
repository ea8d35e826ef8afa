"""SQLAlchemy 2 typed models of EngineScope.

Units are in column names (``_ns``, ``_ms``, ``_bytes``, ``_w``). Raw timestamps are integer
nanoseconds from a monotonic clock (``time.perf_counter_ns``) relative to an origin stored with the
row that owns them; wall-clock instants are timezone-aware UTC ``DateTime`` columns.

Tables:
- ``models``: uploaded/registered model artifacts with their inspection.
- ``jobs`` and ``job_events``: the queue between dashboard/CLI and the worker, and its progress stream.
- ``runs``: one engine configuration measured (or imported) once.
- ``latency_samples``: raw per-iteration latencies of a run.
- ``summaries``: statistics of one metric of a run (or of one load point), from ``profiles.stats``.
- ``run_metrics``: scalar results (throughput etc.) of a run or load point.
- ``layer_timings``: per-layer (per-node) timings of a run.
- ``accuracy_results``: outputs of a run compared with a reference run.
- ``artifacts``: files produced (ONNX precision variants, engines, logs, profiler traces).
- ``load_points``, ``llm_requests``, ``server_metric_samples``: LLM serving sweeps.
- ``telemetry_samples``: GPU/CPU telemetry time series.
- ``gpu_activities``, ``cuda_api_calls``, ``trace_ranges``: kernel timelines of profiled runs (nsys, torch.profiler,
  ONNX Runtime + Kineto).
- ``kernel_metrics``: Nsight Compute metrics of a run's kernels.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
RUN_STATUSES = ("running", "succeeded", "failed")


def utcnow() -> dt.datetime:
    """Timezone-aware current UTC time."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base with the Alembic naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Model(Base):
    """An uploaded or registered model file, stored as ``models/<sha256>/<file>`` under ENGINESCOPE_HOME.

    ``inputs``/``outputs``: list of ``{"name", "dtype", "shape": [int | str | None]}`` (str = symbolic dim).
    ``op_histogram``: ``{"domain::OpType" or "OpType": count}``. ``external_data``: list of
    ``{"tensor", "location", "offset", "length"}``. ``meta``: where the model came from, e.g.
    ``{"export": <report of engine_runner.onnx_export>}`` for a model made by ``enginescope export``
    (``{}`` for an upload).
    """

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    original_name: Mapped[str] = mapped_column(String(1024))
    format: Mapped[str] = mapped_column(String(32), default="onnx")
    path: Mapped[str] = mapped_column(String(2048))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    opset: Mapped[int | None] = mapped_column(Integer)
    ir_version: Mapped[int | None] = mapped_column(Integer)
    producer: Mapped[str | None] = mapped_column(String(256))
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    outputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    op_histogram: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    opset_imports: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    param_count: Mapped[int | None] = mapped_column(BigInteger)
    external_data: Mapped[list[Any]] = mapped_column(JSON, default=list)
    preflight: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="model", passive_deletes=True)


class Job(Base):
    """A unit of work in the queue. ``spec`` is the validated pydantic spec as JSON; ``kind`` picks the
    job function (``engine_runner.jobs``). ``progress`` is 0..1."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str] = mapped_column(String(64), default="cpu")
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    timeout_s: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    pid: Mapped[int | None] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    log_path: Mapped[str | None] = mapped_column(String(2048))
    error: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16), default="dashboard")  # dashboard | cli
    created_by: Mapped[str | None] = mapped_column(String(256))  # who started it (db.access identity name)

    runs: Mapped[list[Run]] = relationship(back_populates="job", passive_deletes=True)
    events: Mapped[list[JobEvent]] = relationship(back_populates="job", passive_deletes=True)


class JobEvent(Base):
    """One progress event of a job (the stream the UI consumes). ``ts`` is wall-clock UTC."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # progress | stage | warning | error | info
    message: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    job: Mapped[Job] = relationship(back_populates="events")


class Run(Base):
    """One engine configuration measured once (or imported from files produced elsewhere).

    ``engine``: onnxruntime | tensorrt | torch | vllm | <imported tool>. ``precision``: fp32 | fp16 |
    bf16 | int8-dynamic | int8-qdq | fp8 | ... ``shapes``: ``{input_name: [dims]}`` actually used.
    ``environment``: fingerprint (cpu, gpu, driver, library versions). ``timing_window`` says what
    the latency includes (e.g. "session.run, host tensors, no copies on CPU EP").
    ``numerically_valid``: False when outputs are NaN/Inf/all-zero (never shown as a speed win).
    """

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"), index=True)
    engine: Mapped[str] = mapped_column(String(64))
    engine_version: Mapped[str | None] = mapped_column(String(64))
    precision: Mapped[str | None] = mapped_column(String(32))
    batch_size: Mapped[int | None] = mapped_column(Integer)
    shapes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(64), default="measured")  # measured | import:trtexec | ...
    label: Mapped[str | None] = mapped_column(String(512))
    timing_window: Mapped[str | None] = mapped_column(Text)
    numerically_valid: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    job: Mapped[Job | None] = relationship(back_populates="runs")
    model: Mapped[Model | None] = relationship(back_populates="runs")


class LatencySample(Base):
    """One raw per-iteration latency of a run, integer nanoseconds, in iteration order ``seq`` (unique
    within the run, across repeats). ``repeat`` is the 0-based repeat the sample was measured in
    (``--repeats N``: each configuration measured N times, interleaved with the job's others)."""

    __tablename__ = "latency_samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    latency_ns: Mapped[int] = mapped_column(BigInteger)
    repeat: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    __table_args__ = (Index("ix_latency_samples_run_seq", "run_id", "seq"),)


class Summary(Base):
    """Statistics of one metric (``latency_ms``, ``ttft_ms``, ``h2d_ms``...) of a run, or of one load
    point of a run. Computed by ``profiles.stats.summarize`` from raw samples (or copied from an
    imported file, then ``source`` says so)."""

    __tablename__ = "summaries"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    point_id: Mapped[int | None] = mapped_column(ForeignKey("load_points.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(16), default="ms")
    count: Mapped[int] = mapped_column(Integer, default=0)
    mean: Mapped[float | None] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    p50: Mapped[float | None] = mapped_column(Float)
    p90: Mapped[float | None] = mapped_column(Float)
    p95: Mapped[float | None] = mapped_column(Float)
    p99: Mapped[float | None] = mapped_column(Float)
    median_ci_low: Mapped[float | None] = mapped_column(Float)
    median_ci_high: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # other percentiles from imports
    source: Mapped[str] = mapped_column(String(64), default="computed")


class RunMetric(Base):
    """A scalar result of a run or load point: ``throughput_per_s``, ``items_per_s``, ``goodput_per_s``..."""

    __tablename__ = "run_metrics"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    point_id: Mapped[int | None] = mapped_column(ForeignKey("load_points.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32))


class LayerTiming(Base):
    """Per-layer (per-node) timing of a run.

    ``name``: node/layer name as the tool printed it (fused and Myelin/ForeignNode layers kept as they
    are; ``fused`` says so). ``op_type``: ONNX op type or TensorRT layer type. Times in ms per
    inference: ``avg_ms`` (mean), ``median_ms``; ``total_ms`` over ``count`` invocations;
    ``percentage`` of the run's summed layer time. ``details``: inputs/outputs, formats, metadata.
    """

    __tablename__ = "layer_timings"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(Text)
    op_type: Mapped[str | None] = mapped_column(String(128))
    precision: Mapped[str | None] = mapped_column(String(64))
    tactic: Mapped[str | None] = mapped_column(Text)
    avg_ms: Mapped[float | None] = mapped_column(Float)
    median_ms: Mapped[float | None] = mapped_column(Float)
    total_ms: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int | None] = mapped_column(Integer)
    percentage: Mapped[float | None] = mapped_column(Float)
    fused: Mapped[bool] = mapped_column(Boolean, default=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AccuracyResult(Base):
    """Outputs of a run compared with those of ``reference_run_id`` on the same inputs.

    ``output_name`` is an output tensor name, or ``"*"`` for the aggregate over all outputs.
    ``valid`` is False when outputs contain NaN/Inf or are all zeros.
    """

    __tablename__ = "accuracy_results"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    reference_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    output_name: Mapped[str] = mapped_column(String(512), default="*")
    max_abs_err: Mapped[float | None] = mapped_column(Float)
    max_rel_err: Mapped[float | None] = mapped_column(Float)
    cosine: Mapped[float | None] = mapped_column(Float)
    nan_count: Mapped[int] = mapped_column(BigInteger, default=0)
    inf_count: Mapped[int] = mapped_column(BigInteger, default=0)
    all_zero: Mapped[bool] = mapped_column(Boolean, default=False)
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Artifact(Base):
    """A file EngineScope produced or imported, stored under ENGINESCOPE_HOME (``path`` relative to it).

    ``kind``: onnx_variant | engine | log | ort_profile | trtexec_times | trtexec_profile |
    trtexec_layers | nsys | calibration | ...
    """

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(2048))
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cache_key: Mapped[str | None] = mapped_column(String(128), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LoadPoint(Base):
    """One load level of an LLM serving sweep: ``mode`` concurrency | request_rate, ``level`` its value
    (``inf`` rate stored as ``None`` with ``mode='request_rate'``). ``t0_ns`` is the monotonic origin
    of its requests' timestamps. ``report``: the full computed metric report (JSON). ``repeat``: the 0-based
    repeat of this level (``--repeats N`` measures each level N times, interleaved; one point per repeat)."""

    __tablename__ = "load_points"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer, default=0)
    mode: Mapped[str] = mapped_column(String(32))
    level: Mapped[float | None] = mapped_column(Float)
    t0_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="running")
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    repeat: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LlmRequest(Base):
    """One request of an LLM load point, raw. Times are integer ns relative to the point's ``t0_ns``.

    ``chunk_ns``/``chunk_tokens``: arrival time and token count of every token-carrying chunk.
    ``output_tokens``: from server usage; ``client_output_tokens``: client tokenizer's count.
    ``error_reason``: http_<status> | timeout | empty | connection | ... (None when successful).
    """

    __tablename__ = "llm_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    point_id: Mapped[int] = mapped_column(ForeignKey("load_points.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    warmup: Mapped[bool] = mapped_column(Boolean, default=False)
    scheduled_ns: Mapped[int | None] = mapped_column(BigInteger)
    send_ns: Mapped[int | None] = mapped_column(BigInteger)
    first_token_ns: Mapped[int | None] = mapped_column(BigInteger)
    first_content_ns: Mapped[int | None] = mapped_column(BigInteger)
    #: first event carrying a choice, empty text or not (vLLM's client's TTFT point); None before 0004
    first_event_ns: Mapped[int | None] = mapped_column(BigInteger)
    end_ns: Mapped[int | None] = mapped_column(BigInteger)
    chunk_ns: Mapped[list[Any]] = mapped_column(JSON, default=list)
    chunk_tokens: Mapped[list[Any]] = mapped_column(JSON, default=list)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    client_output_tokens: Mapped[int | None] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_reason: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)


class ServerMetricSample(Base):
    """One scraped Prometheus sample from the server's ``/metrics`` during a load point.
    ``ts_ns`` relative to the point's ``t0_ns``."""

    __tablename__ = "server_metric_samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    point_id: Mapped[int] = mapped_column(ForeignKey("load_points.id", ondelete="CASCADE"), index=True)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(256))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    value: Mapped[float] = mapped_column(Float)


class TelemetrySample(Base):
    """GPU (NVML) or CPU telemetry sampled during a run. ``ts_ns`` monotonic, relative to the sampler's
    start (``engine_runner.telemetry``: field meanings and NVML sources). ``throttle_reasons`` is NVML's
    clock-event bit mask, ``energy_mj`` its total-energy counter (mJ since driver load), ``processes``
    ``[{"pid", "used_bytes"}]`` of the device's compute processes."""

    __tablename__ = "telemetry_samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    device: Mapped[str] = mapped_column(String(64))
    util_pct: Mapped[float | None] = mapped_column(Float)
    mem_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    power_w: Mapped[float | None] = mapped_column(Float)
    temp_c: Mapped[float | None] = mapped_column(Float)
    sm_clock_mhz: Mapped[float | None] = mapped_column(Float)
    mem_util_pct: Mapped[float | None] = mapped_column(Float)
    mem_clock_mhz: Mapped[float | None] = mapped_column(Float)
    throttle_reasons: Mapped[int | None] = mapped_column(BigInteger)
    energy_mj: Mapped[int | None] = mapped_column(BigInteger)
    processes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class GpuActivityRow(Base):
    """One kernel / memcpy / memset of a kernel timeline (``profiles.kernels.GpuActivity``: field meanings).

    Times are integer ns relative to the capture's origin (``runs.config["kernel_trace"]["origin_ns"]``).
    A run holding these rows is a profiled run (``runs.config["profiler"]``), never an unprofiled measurement."""

    __tablename__ = "gpu_activities"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    duration_ns: Mapped[int] = mapped_column(BigInteger)
    device: Mapped[int | None] = mapped_column(Integer)
    stream: Mapped[int | None] = mapped_column(BigInteger)
    correlation_id: Mapped[int | None] = mapped_column(BigInteger)
    launch_ns: Mapped[int | None] = mapped_column(BigInteger)
    grid: Mapped[list[Any] | None] = mapped_column(JSON)
    block: Mapped[list[Any] | None] = mapped_column(JSON)
    registers_per_thread: Mapped[int | None] = mapped_column(Integer)
    shared_mem_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    copy_kind: Mapped[str | None] = mapped_column(String(16))
    op: Mapped[str | None] = mapped_column(Text)
    iteration: Mapped[int | None] = mapped_column(Integer)


class CudaApiCallRow(Base):
    """One CUDA runtime/driver API call of a capture (``profiles.kernels.ApiCall``); ns relative to the origin."""

    __tablename__ = "cuda_api_calls"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    duration_ns: Mapped[int] = mapped_column(BigInteger)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    correlation_id: Mapped[int | None] = mapped_column(BigInteger)


class TraceRangeRow(Base):
    """One NVTX range / ``record_function`` annotation of a capture (``profiles.kernels.Range``)."""

    __tablename__ = "trace_ranges"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    domain: Mapped[str | None] = mapped_column(String(256))


class KernelMetricRow(Base):
    """Nsight Compute metrics of one profiled kernel launch (``profiles.ncu.NcuKernel``: names and units).

    Percentages are of the device's peak as ncu defines them; ``flop`` and ``dram_bytes`` are counts for the one
    launch; ``arithmetic_intensity`` is flop / DRAM byte; ``metrics`` keeps every raw value ncu printed."""

    __tablename__ = "kernel_metrics"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)
    short_name: Mapped[str] = mapped_column(String(512))
    category: Mapped[str] = mapped_column(String(32))
    duration_ns: Mapped[int | None] = mapped_column(BigInteger)
    achieved_occupancy_pct: Mapped[float | None] = mapped_column(Float)
    sm_throughput_pct: Mapped[float | None] = mapped_column(Float)
    dram_throughput_pct: Mapped[float | None] = mapped_column(Float)
    flop: Mapped[float | None] = mapped_column(Float)
    dram_bytes: Mapped[float | None] = mapped_column(Float)
    arithmetic_intensity: Mapped[float | None] = mapped_column(Float)
    flop_per_s: Mapped[float | None] = mapped_column(Float)
    grid: Mapped[list[Any] | None] = mapped_column(JSON)
    block: Mapped[list[Any] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Report(Base):
    """A saved report: a set of runs judged against a baseline, for team leads to open later.

    ``run_ids``: the runs shown, in display order (JSON list of int; the baseline among them);
    ``baseline_run_id``: the run every other is compared with (NULL when that run was deleted);
    ``metric``: the headline metric of the verdict table (``profiles.verdict.METRICS`` key);
    ``charts``: the chosen charts and tables (JSON list of names); ``options``: e.g.
    ``{"allow_different_hardware": bool}``. Times are UTC.
    """

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(512))
    author: Mapped[str | None] = mapped_column(String(256))
    notes: Mapped[str | None] = mapped_column(Text)
    baseline_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    run_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metric: Mapped[str | None] = mapped_column(String(64))
    charts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A dashboard user's role (``db.access``): ``viewer`` reads models, runs and reports; ``editor`` also
    uploads, starts, cancels, imports and deletes. ``name`` is the identity the authentication gives (the OIDC
    e-mail or the trusted proxy's ``X-Forwarded-User``); ``granted_by``: who granted the role (a user name,
    ``"cli:<os user>"`` or ``"first user"``). Times are UTC."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    granted_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
