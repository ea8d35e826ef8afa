"""Parse an Nsight Systems SQLite export (``nsys export --type sqlite``) into a :class:`profiles.kernels.KernelTrace`.

Source: NVIDIA's documented export schema ("Nsight Systems User Guide, Exporter: SQLite Schema Reference"),
checked against a real export of Nsight Systems 2025.5.2 (schema 3.24.0; ``../shared/fixtures/nsys``). Tables read:

- ``CUPTI_ACTIVITY_KIND_KERNEL``: one row per kernel. ``start``/``end`` (ns, the session clock), ``deviceId``,
  ``streamId``, ``correlationId``, ``globalPid``, ``demangledName``/``shortName``/``mangledName`` (ids into
  ``StringIds``; older exports: a ``name`` column), ``gridX/Y/Z``, ``blockX/Y/Z``, ``registersPerThread``,
  ``staticSharedMemory`` + ``dynamicSharedMemory`` (bytes per block).
- ``CUPTI_ACTIVITY_KIND_MEMCPY``: ``start``, ``end``, ``bytes``, ``copyKind`` (named by the ``ENUM_CUDA_MEMCPY_OPER``
  table when present, else CUPTI's documented ``CUpti_ActivityMemcpyKind`` numbers), ``srcKind``/``dstKind``
  (``ENUM_CUDA_MEM_KIND``: Pageable, Pinned, Device...).
- ``CUPTI_ACTIVITY_KIND_MEMSET``: ``start``, ``end``, ``bytes``, ``memKind``.
- ``CUPTI_ACTIVITY_KIND_RUNTIME``: CUDA API calls on host threads: ``start``, ``end``, ``globalTid``,
  ``correlationId``, ``nameId`` (``StringIds``), ``eventClass`` (``ENUM_NSYS_EVENT_CLASS``: 0 CUDA runtime,
  1 CUDA driver; nsys 2025.5 stores driver calls such as ``cuLibraryLoadData`` in this table). A
  ``CUPTI_ACTIVITY_KIND_DRIVER`` table, where an export has one, is read as driver calls.
- ``NVTX_EVENTS``: ``start``, ``end``, ``eventType`` (``ENUM_NSYS_EVENT_TYPE``: 59 NvtxPushPopRange,
  60 NvtxStartEndRange, 70/71 their NVTXt forms: kept; 34 NvtxMark and others: skipped; 75 NvtxDomainCreate:
  the domain names), ``text`` or ``textId`` (``StringIds``), ``globalTid``, ``domainId``.
- ``StringIds`` (``id``, ``value``), ``TARGET_INFO_GPU`` / ``TARGET_INFO_CUDA_DEVICE`` (devices),
  ``META_DATA_EXPORT`` (``EXPORT_SCHEMA_VERSION``, ``EXPORT_PRODUCT_VERSION``: the nsys that exported),
  ``META_DATA_CAPTURE`` and ``TARGET_INFO_SYSTEM_ENV`` (the nsys that captured; see :func:`capture_version`).

Schema drift: every table is found by name, case-insensitively, with or without a version suffix
(``NVTX_EVENTS``, ``NVTX_EVENTS_V2``, ``CUPTI_ACTIVITY_KIND_KERNEL_2``: the highest suffix wins), and every
column by name with the alternatives older exports used (``name`` for the kernel name ids, ``text`` without
``textId``, no ``eventClass``, no ENUM tables). A table that is absent (no kernels, no NVTX) is a note in
``trace.notes``; a present table without a column this parser needs is a :class:`ParseError` naming the file,
the table and the column.

Times: ``globalTid`` encodes the OS process and thread ids (``pid = (globalTid >> 24) & 0xFFFFFF``,
``tid = globalTid & 0xFFFFFF``, NVIDIA's documented layout); ``thread_id`` is that ``tid``. Every time in the
trace is integer ns relative to the earliest event read (``origin_ns``: that event's ``start`` as exported).
``launch_ns`` of a GPU activity is the start of the API call with the same ``correlationId`` in the same
process. API names lose nsys's ``_vNNNN`` entry-point suffix (``cudaLaunchKernel_v7000`` -> ``cudaLaunchKernel``),
as ``nsys stats`` prints them and as Kineto names them.

Pure: reads the file it is given (read-only, immutable mode), writes nothing, no DB, no subprocesses.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from profiles.errors import InputError, ParseError
from profiles.kernels import ApiCall, GpuActivity, KernelTrace, Range, assign_iterations

SOURCE_TOOL = "nsys"

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"

#: File name suffixes of Nsight Systems reports (``.qdrep`` before 2021.4, ``.nsys-rep`` since).
REPORT_SUFFIXES = (".nsys-rep", ".qdrep")

#: Export schema versions this parser was checked on (major version -> the newest minor seen).
CHECKED_SCHEMA = (3, 24)

T_KERNEL = "CUPTI_ACTIVITY_KIND_KERNEL"
T_MEMCPY = "CUPTI_ACTIVITY_KIND_MEMCPY"
T_MEMSET = "CUPTI_ACTIVITY_KIND_MEMSET"
T_RUNTIME = "CUPTI_ACTIVITY_KIND_RUNTIME"
T_DRIVER = "CUPTI_ACTIVITY_KIND_DRIVER"
T_NVTX = "NVTX_EVENTS"

#: CUPTI's documented ``CUpti_ActivityMemcpyKind`` values, used when the export has no ENUM_CUDA_MEMCPY_OPER.
CUPTI_MEMCPY_KIND = {0: "UNKNOWN", 1: "HTOD", 2: "DTOH", 3: "HTOA", 4: "ATOH", 5: "ATOA", 6: "ATOD", 7: "DTOA",
                     8: "DTOD", 9: "HTOH", 10: "PTOP"}
#: CUPTI memcpy kinds -> :data:`profiles.kernels.COPY_KINDS` (CUDA arrays are device memory; UVM kinds by direction).
_COPY_WORD = {"HTOD": "HtoD", "DTOH": "DtoH", "DTOD": "DtoD", "HTOH": "HtoH", "PTOP": "PtoP", "HTOA": "HtoD",
              "ATOH": "DtoH", "ATOA": "DtoD", "ATOD": "DtoD", "DTOA": "DtoD", "UVM_HTOD": "HtoD",
              "UVM_DTOH": "DtoH", "UVM_DTOD": "DtoD"}
#: Memory-kind labels of ``srcKind``/``dstKind``/``memKind`` when the export has no ENUM_CUDA_MEM_KIND: nsys's own
#: numbering (the 2025.5 export's ENUM_CUDA_MEM_KIND; CUPTI's ``CUpti_ActivityMemoryKind`` minus one, Unknown last).
NSYS_MEM_KIND = {0: "Pageable", 1: "Pinned", 2: "Device", 3: "Array", 4: "Managed", 5: "Device Static",
                 6: "Managed Static", 7: "Unknown"}
#: Documented ``ENUM_NSYS_EVENT_TYPE`` ids, used when the export has no such table.
NVTX_RANGE_TYPES = {59: "NvtxPushPopRange", 60: "NvtxStartEndRange", 70: "NvtxtPushPopRange", 71: "NvtxtStartEndRange"}
NVTX_DOMAIN_CREATE = 75
#: Documented ``ENUM_NSYS_EVENT_CLASS`` ids of CUDA API rows.
EVENT_CLASS = {0: "runtime", 1: "driver"}

_API_SUFFIX = re.compile(r"_v\d+$")
_VERSION = re.compile(r"(\d{4}\.\d+(?:\.\d+)*)")
_INSTALL_DIR_VERSION = re.compile(r"nsight[-_ ]systems[/\\ -]+(\d{4}\.\d+(?:\.\d+)*)", re.I)
_EXPORT_KEYS = ("EXPORT_PRODUCT_NAME", "EXPORT_PRODUCT_VERSION", "EXPORT_PRODUCT_DATE", "EXPORT_SCHEMA_VERSION",
                "EXPORT_PLATFORM", "EXPORT_ARCH", "EXPORT_TIME_UTC", "EXPORT_PARAM_INPUT_FILE",
                "EXPORT_PARAM_TIME_NORMALIZE", "EXPORT_PARAM_TIME_SHIFT")
_CAPTURE_KEYS = ("PROCESS_0:COMMAND", "RUN_DURATION_MS", "START_TRIGGER", "STOP_TRIGGER", "DEVICE_TYPE",
                 "PROFILING_SESSION_UUID", "START_DELAY_MS")


def is_sqlite_file(path: str | Path) -> bool:
    """True when the file starts with the SQLite 3 magic bytes (:data:`SQLITE_MAGIC`); False when it does not
    or cannot be read."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def is_nsys_file(path: str | Path) -> bool:
    """True for a file an nsys import takes: a report (:data:`REPORT_SUFFIXES`), a ``.sqlite`` file (so one that is
    not SQLite is refused as such rather than read as a trtexec log), or any file with the SQLite magic bytes
    (whether it is an nsys export is checked by :func:`parse_nsys_sqlite`)."""
    p = Path(path)
    return p.suffix.lower() in (*REPORT_SUFFIXES, ".sqlite") or is_sqlite_file(p)


def _version_tuple(v: str | None) -> tuple[int, ...]:
    m = re.match(r"\d+(?:\.\d+)*", v or "")
    return tuple(int(x) for x in m.group(0).split(".")) if m else ()


def resolve_table(tables: Iterable[str], base: str) -> str | None:
    """The table of ``base`` in an export: ``base`` itself (any case), else ``base`` with a version suffix
    (``_V2``, ``_2``; the highest wins), else None."""
    names = list(tables)
    exact = [t for t in names if t.upper() == base.upper()]
    if exact:
        return exact[0]
    pat = re.compile(re.escape(base) + r"_V?(\d+)$", re.I)
    suffixed = [(int(m.group(1)), t) for t in names if (m := pat.match(t))]
    return max(suffixed)[1] if suffixed else None


class _Export:
    """An open export: table and column lookups, StringIds, errors naming the file."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
        self._strings: dict[int, str] | None = None
        self.missing_strings = 0

    def table(self, base: str) -> str | None:
        return resolve_table(self.tables, base)

    def columns(self, table: str) -> dict[str, str]:
        """``{lower name: name}`` of a table's columns."""
        return {r[1].lower(): r[1] for r in self.conn.execute(f'PRAGMA table_info("{table}")')}

    def require(self, table: str, cols: Mapping[str, str], *alternatives: str) -> str:
        """The first of ``alternatives`` the table has (its real spelling), else ParseError naming them."""
        for name in alternatives:
            if name.lower() in cols:
                return cols[name.lower()]
        wanted = " or ".join(alternatives)
        raise ParseError(f"{self.path}: table {table} has no column {wanted} (required to read it; the table has: "
                         f"{', '.join(sorted(cols.values()))})")

    def rows(self, table: str, cols: Mapping[str, str], wanted: Mapping[str, str | None]) -> list[dict[str, Any]]:
        """Rows as ``{alias: value}`` for ``wanted`` = ``{alias: real column or None}`` (None reads as NULL)."""
        sel = ", ".join(f'"{c}" AS "{a}"' if c else f'NULL AS "{a}"' for a, c in wanted.items())
        try:
            cur = self.conn.execute(f'SELECT {sel} FROM "{table}"')
        except sqlite3.DatabaseError as exc:
            raise ParseError(f"{self.path}: cannot read table {table}: {exc}") from None
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def opt(self, cols: Mapping[str, str], *alternatives: str) -> str | None:
        return next((cols[a.lower()] for a in alternatives if a.lower() in cols), None)

    @property
    def strings(self) -> dict[int, str]:
        if self._strings is None:
            t = self.table("StringIds")
            self._strings = {}
            if t:
                cols = self.columns(t)
                idc = self.require(t, cols, "id")
                vc = self.require(t, cols, "value")
                self._strings = {int(i): str(v) for i, v in self.conn.execute(f'SELECT "{idc}", "{vc}" FROM "{t}"')}
        return self._strings

    def text(self, value: Any) -> str | None:
        """A name column's value: a StringIds id (int) resolved, a string as it is, NULL as None."""
        if value is None:
            return None
        if isinstance(value, str):
            return value
        s = self.strings.get(int(value))
        if s is None:
            self.missing_strings += 1
            return f"<string id {value}>"
        return s

    def enum(self, base: str) -> dict[int, str]:
        """``{id: name}`` of an ``ENUM_*`` table (empty when absent)."""
        t = self.table(base)
        if not t:
            return {}
        cols = self.columns(t)
        if "id" not in cols or "name" not in cols:
            return {}
        return {int(i): str(n) for i, n in self.conn.execute(f'SELECT "{cols["id"]}", "{cols["name"]}" FROM "{t}"')}

    def enum_labels(self, base: str) -> dict[int, str]:
        t = self.table(base)
        if not t:
            return {}
        cols = self.columns(t)
        lab = cols.get("label") or cols.get("name")
        if "id" not in cols or not lab:
            return {}
        return {int(i): str(n) for i, n in self.conn.execute(f'SELECT "{cols["id"]}", "{lab}" FROM "{t}"')}

    def key_values(self, base: str) -> list[tuple[str, str]]:
        """``(name, value)`` rows of a ``META_DATA_*`` table (empty when absent or shaped otherwise)."""
        t = self.table(base)
        if not t:
            return []
        cols = self.columns(t)
        if "name" not in cols or "value" not in cols:
            return []
        return [(str(n), "" if v is None else str(v))
                for n, v in self.conn.execute(f'SELECT "{cols["name"]}", "{cols["value"]}" FROM "{t}"')]


def _pid(global_id: Any) -> int | None:
    """OS process id of an nsys ``globalPid``/``globalTid`` (bits 24-47)."""
    return None if global_id is None else (int(global_id) >> 24) & 0xFFFFFF


def _tid(global_tid: Any) -> int | None:
    """OS thread id of an nsys ``globalTid`` (bits 0-23)."""
    return None if global_tid is None else int(global_tid) & 0xFFFFFF


def schema_version_of(export_meta: Mapping[str, str]) -> str | None:
    """``EXPORT_SCHEMA_VERSION`` of ``META_DATA_EXPORT``, else ``MAJOR.MINOR.MICRO`` from its parts, else None."""
    if export_meta.get("EXPORT_SCHEMA_VERSION"):
        return export_meta["EXPORT_SCHEMA_VERSION"]
    parts = [export_meta.get(f"EXPORT_SCHEMA_VERSION_{p}") for p in ("MAJOR", "MINOR", "MICRO")]
    if parts[0]:
        return ".".join(p for p in parts if p)
    return None


def capture_version(capture: Iterable[tuple[str, str]], system_env: Mapping[str, str],
                    diagnostics: Iterable[str]) -> tuple[str | None, str | None]:
    """``(version, where it came from)`` of the nsys that *captured* the report (the export may come from a
    newer nsys). Tried in order: a ``META_DATA_CAPTURE`` row whose name contains ``VERSION`` and whose value is
    an nsys version (``2025.5.2``...); the version in ``TARGET_INFO_SYSTEM_ENV``'s ``TargetInstallDir``
    (``/opt/nvidia/nsight-systems/2025.5.2/target-linux-x64``: the 2025.5 export has no version row in
    META_DATA_CAPTURE); an ``nsight-systems/<version>`` path in a ``DIAGNOSTIC_EVENT`` text. ``(None, None)``
    when none says."""
    for name, value in capture:
        if "VERSION" in name.upper() and re.match(r"^\s*\d{4}\.\d+", value):
            return _VERSION.search(value).group(1), f"META_DATA_CAPTURE.{name}"  # type: ignore[union-attr]
    inst = system_env.get("TargetInstallDir") or ""
    if m := _INSTALL_DIR_VERSION.search(inst):
        return m.group(1), "TARGET_INFO_SYSTEM_ENV.TargetInstallDir"
    for text in diagnostics:
        if m := _INSTALL_DIR_VERSION.search(text or ""):
            return m.group(1), "DIAGNOSTIC_EVENT"
    return None, None


def _open(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not is_sqlite_file(path):
        raise ParseError(f"{path}: not an SQLite file, so not an `nsys export --type sqlite` output "
                         "(an Nsight Systems report must end in .nsys-rep or .qdrep)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ParseError(f"{path}: unreadable SQLite file ({exc})") from None
    return conn


def parse_nsys_sqlite(path: str | Path) -> KernelTrace:
    """Read an ``nsys export --type sqlite`` file (see the module docstring for the tables and units).

    Args:
        path: the ``.sqlite`` export.

    Returns:
        A :class:`KernelTrace` with ``source_tool="nsys"``: activities (kernels, memcpys, memsets) in GPU start
        order, CUDA runtime/driver API calls and NVTX ranges in start order, times integer ns from ``origin_ns``
        (the earliest event's exported ``start``), ``tool_version`` (the capturing nsys, else the exporting one),
        ``schema_version`` (``META_DATA_EXPORT``), ``devices`` (``TARGET_INFO_GPU``), ``meta`` (versions and
        where they came from, table names used, export and capture settings), ``notes`` (absent tables, skipped
        rows), and ``iteration`` set from ``iteration N`` NVTX ranges (:func:`profiles.kernels.assign_iterations`).

    Raises:
        InputError: the file does not exist.
        ParseError: not SQLite, not an nsys export, or a table lacks a column this parser needs (names the file,
            the table and the column).
    """
    path = Path(path)
    conn = _open(path)
    try:
        return _parse(_Export(path, conn))
    except sqlite3.DatabaseError as exc:
        raise ParseError(f"{path}: unreadable nsys export ({exc})") from None
    finally:
        conn.close()


def _parse(ex: _Export) -> KernelTrace:
    path = ex.path
    export_rows = ex.key_values("META_DATA_EXPORT")
    has_activity = any(ex.table(t) for t in (T_KERNEL, T_MEMCPY, T_MEMSET, T_RUNTIME, T_DRIVER, T_NVTX))
    if not export_rows and not (ex.table("StringIds") and has_activity):
        raise ParseError(f"{path}: an SQLite file that is not an Nsight Systems export (no META_DATA_EXPORT table, "
                         "no StringIds/CUPTI_ACTIVITY_KIND_*/NVTX_EVENTS tables); make one with "
                         "`nsys export --type sqlite --output FILE.sqlite REPORT.nsys-rep`")
    export_meta: dict[str, str] = {}
    for n, v in export_rows:
        export_meta.setdefault(n, v)
    capture_rows = ex.key_values("META_DATA_CAPTURE")
    system_env: dict[str, str] = {}
    if t := ex.table("TARGET_INFO_SYSTEM_ENV"):
        cols = ex.columns(t)
        if "name" in cols and "value" in cols:
            system_env = {str(n): "" if v is None else str(v)
                          for n, v in ex.conn.execute(f'SELECT "{cols["name"]}", "{cols["value"]}" FROM "{t}"')}
    diag_texts: list[str] = []
    if t := ex.table("DIAGNOSTIC_EVENT"):
        cols = ex.columns(t)
        if "text" in cols:
            diag_texts = [ex.text(v) or "" for (v,) in ex.conn.execute(f'SELECT "{cols["text"]}" FROM "{t}"')]

    schema = schema_version_of(export_meta)
    export_version = export_meta.get("EXPORT_PRODUCT_VERSION") or None
    cap_version, cap_from = capture_version(capture_rows, system_env, diag_texts)
    notes: list[str] = []
    if cap_version:
        tool_version, tool_from = cap_version, cap_from
    elif export_version:
        tool_version = ".".join(export_version.split(".")[:3])
        tool_from = "META_DATA_EXPORT.EXPORT_PRODUCT_VERSION (the capture's own version is not in the export)"
        notes.append("the capturing nsys version is not in the export; the exporting nsys's version is shown")
    else:
        tool_version, tool_from = None, None
        notes.append("no nsys version in the export (no META_DATA_EXPORT.EXPORT_PRODUCT_VERSION)")
    sv = _version_tuple(schema)
    if not schema:
        notes.append("no export schema version (META_DATA_EXPORT.EXPORT_SCHEMA_VERSION); columns read by name")
    elif sv[:2] > CHECKED_SCHEMA:
        notes.append(f"export schema {schema} is newer than the newest this parser was checked on "
                     f"({CHECKED_SCHEMA[0]}.{CHECKED_SCHEMA[1]}); columns read by name")

    tables_used: dict[str, str | None] = {}
    api_calls, api_start = _api_calls(ex, notes, tables_used)
    activities: list[GpuActivity] = []
    _kernels(ex, activities, api_start, notes, tables_used)
    _memcpys(ex, activities, api_start, tables_used)
    _memsets(ex, activities, api_start, tables_used)
    ranges = _nvtx(ex, notes, tables_used)
    if ex.missing_strings:
        notes.append(f"{ex.missing_strings} name id(s) not found in StringIds (shown as '<string id N>')")

    starts = [a.start_ns for a in activities] + [c.start_ns for c in api_calls] + [r.start_ns for r in ranges]
    origin = min(starts) if starts else None
    if origin is None:
        notes.append("the export holds no kernels, copies, CUDA API calls or NVTX ranges")
    else:
        for a in activities:
            a.start_ns -= origin
            if a.launch_ns is not None:
                a.launch_ns -= origin
        for c in api_calls:
            c.start_ns -= origin
        for r in ranges:
            r.start_ns -= origin
            r.end_ns -= origin
    activities.sort(key=lambda a: (a.start_ns, a.kind))
    api_calls.sort(key=lambda c: c.start_ns)
    ranges.sort(key=lambda r: (r.start_ns, -r.end_ns))

    meta: dict[str, Any] = {
        "file": path.name, "export_version": export_version, "capture_version": cap_version,
        "tool_version_from": tool_from, "schema_version": schema, "tables": tables_used,
        "export": {k: export_meta[k] for k in _EXPORT_KEYS if k in export_meta},
        "capture": {k: v for k, v in capture_rows if k in _CAPTURE_KEYS or "VERSION" in k.upper()},
        "capture_event_types": [v for k, v in capture_rows if k == "CAPTURE_EVENT_TYPE"],
    }
    for key, name in (("CudaDriverVersion", "cuda_driver_version"), ("NvDriverVersion", "nvidia_driver_version"),
                      ("OsDescription", "os")):
        if system_env.get(key):
            meta[name] = system_env[key]
    trace = KernelTrace(source_tool=SOURCE_TOOL, tool_version=tool_version, schema_version=schema, origin_ns=origin,
                        activities=activities, api_calls=api_calls, ranges=ranges, devices=_devices(ex),
                        notes=notes, meta=meta)
    assign_iterations(trace)
    return trace


def _api_calls(ex: _Export, notes: list[str], used: dict[str, str | None]) -> tuple[list[ApiCall], dict[tuple[int | None, int], int]]:
    """CUDA API calls (absolute times) and ``{(pid, correlationId): start}`` for launch times."""
    calls: list[ApiCall] = []
    starts: dict[tuple[int | None, int], int] = {}
    classes = {i: ("driver" if "DRIVER" in n.upper() else "runtime" if "RUNTIME" in n.upper() else "")
               for i, n in ex.enum("ENUM_NSYS_EVENT_CLASS").items()} or dict(EVENT_CLASS)
    found = False
    for base, default_kind in ((T_RUNTIME, "runtime"), (T_DRIVER, "driver")):
        t = ex.table(base)
        used[base] = t
        if not t:
            continue
        found = True
        cols = ex.columns(t)
        wanted = {"start": ex.require(t, cols, "start"), "end": ex.require(t, cols, "end"),
                  "name": ex.require(t, cols, "nameId", "name"),
                  "tid": ex.opt(cols, "globalTid"), "thread": ex.opt(cols, "threadId"),
                  "corr": ex.opt(cols, "correlationId"),
                  "cls": ex.opt(cols, "eventClass") if base == T_RUNTIME else None}
        for r in ex.rows(t, cols, wanted):
            name = _API_SUFFIX.sub("", ex.text(r["name"]) or "?")
            kind = default_kind
            if r["cls"] is not None and classes.get(int(r["cls"])):
                kind = classes[int(r["cls"])]
            elif r["cls"] is None and base == T_RUNTIME:  # older exports: no eventClass; cu* without cuda* is driver
                kind = "driver" if name.startswith("cu") and not name.startswith("cuda") else "runtime"
            start, end = int(r["start"]), int(r["end"] if r["end"] is not None else r["start"])
            tid = _tid(r["tid"]) if r["tid"] is not None else r["thread"]
            corr = int(r["corr"]) if r["corr"] is not None else None
            calls.append(ApiCall(kind=kind, name=name, start_ns=start, duration_ns=max(end - start, 0),
                                 thread_id=tid, correlation_id=corr))
            if corr is not None:
                starts.setdefault((_pid(r["tid"]), corr), start)
    if not found:
        notes.append(f"no {T_RUNTIME} table: the capture has no CUDA API calls (was it taken with --trace cuda?)")
    return calls, starts


def _launch(starts: Mapping[tuple[int | None, int], int], pid: int | None, corr: Any) -> int | None:
    if corr is None:
        return None
    got = starts.get((pid, int(corr)))
    if got is None and pid is None:  # no process column on the activity: match on the correlation id alone
        got = next((s for (p, c), s in starts.items() if c == int(corr)), None)
    return got


def _common(ex: _Export, t: str, cols: Mapping[str, str]) -> dict[str, str | None]:
    return {"start": ex.require(t, cols, "start"), "end": ex.require(t, cols, "end"),
            "device": ex.opt(cols, "deviceId"), "stream": ex.opt(cols, "streamId"),
            "corr": ex.opt(cols, "correlationId"), "pid": ex.opt(cols, "globalPid")}


def _kernels(ex: _Export, out: list[GpuActivity], starts: Mapping[tuple[int | None, int], int], notes: list[str],
             used: dict[str, str | None]) -> None:
    t = ex.table(T_KERNEL)
    used[T_KERNEL] = t
    if not t:
        notes.append(f"no {T_KERNEL} table: the capture has no CUDA kernels (was it taken with --trace cuda, "
                     "and did the program launch any?)")
        return
    cols = ex.columns(t)
    wanted = _common(ex, t, cols)
    # demangledName first (full signature), then shortName, mangledName, and the old single "name" column.
    names = [c for c in (ex.opt(cols, "demangledName"), ex.opt(cols, "shortName"), ex.opt(cols, "mangledName"),
                         ex.opt(cols, "name")) if c]
    if not names:
        ex.require(t, cols, "demangledName", "shortName", "name")
    for i, c in enumerate(names):
        wanted[f"n{i}"] = c
    for k in ("gridX", "gridY", "gridZ", "blockX", "blockY", "blockZ", "registersPerThread",
              "staticSharedMemory", "dynamicSharedMemory"):
        wanted[k] = ex.opt(cols, k)
    rows = ex.rows(t, cols, wanted)
    if not rows:
        notes.append(f"{t} is empty: no kernel ran during the capture")
    for r in rows:
        name = next((s for i in range(len(names)) if (s := ex.text(r[f"n{i}"]))), "?")
        start, end = int(r["start"]), int(r["end"])
        grid = [int(r[k]) for k in ("gridX", "gridY", "gridZ")] if r["gridX"] is not None else None
        block = [int(r[k]) for k in ("blockX", "blockY", "blockZ")] if r["blockX"] is not None else None
        smem = None
        if r["staticSharedMemory"] is not None or r["dynamicSharedMemory"] is not None:
            smem = int(r["staticSharedMemory"] or 0) + int(r["dynamicSharedMemory"] or 0)
        out.append(GpuActivity(kind="kernel", name=name, start_ns=start, duration_ns=max(end - start, 0),
                               device=r["device"], stream=r["stream"], correlation_id=r["corr"],
                               launch_ns=_launch(starts, _pid(r["pid"]), r["corr"]), grid=grid, block=block,
                               registers_per_thread=r["registersPerThread"], shared_mem_bytes=smem))


def _mem_kinds(ex: _Export) -> dict[int, str]:
    return ex.enum_labels("ENUM_CUDA_MEM_KIND") or dict(NSYS_MEM_KIND)


def _memcpys(ex: _Export, out: list[GpuActivity], starts: Mapping[tuple[int | None, int], int],
             used: dict[str, str | None]) -> None:
    t = ex.table(T_MEMCPY)
    used[T_MEMCPY] = t
    if not t:
        return
    cols = ex.columns(t)
    wanted = _common(ex, t, cols)
    wanted.update(bytes=ex.require(t, cols, "bytes"), copy=ex.require(t, cols, "copyKind"),
                  src=ex.opt(cols, "srcKind"), dst=ex.opt(cols, "dstKind"))
    enum = {i: re.sub(r"^CUDA_MEMCPY_KIND_", "", n.upper()) for i, n in ex.enum("ENUM_CUDA_MEMCPY_OPER").items()}
    enum = enum or dict(CUPTI_MEMCPY_KIND)
    mem = _mem_kinds(ex)
    for r in ex.rows(t, cols, wanted):
        ck = _COPY_WORD.get(enum.get(int(r["copy"]), "") if r["copy"] is not None else "", "unknown")
        name = f"Memcpy {ck}"
        if r["src"] is not None and r["dst"] is not None:
            name += f" ({mem.get(int(r['src']), '?')} -> {mem.get(int(r['dst']), '?')})"
        start, end = int(r["start"]), int(r["end"])
        out.append(GpuActivity(kind="memcpy", name=name, start_ns=start, duration_ns=max(end - start, 0),
                               device=r["device"], stream=r["stream"], correlation_id=r["corr"],
                               launch_ns=_launch(starts, _pid(r["pid"]), r["corr"]),
                               bytes=int(r["bytes"]) if r["bytes"] is not None else None, copy_kind=ck))


def _memsets(ex: _Export, out: list[GpuActivity], starts: Mapping[tuple[int | None, int], int],
             used: dict[str, str | None]) -> None:
    t = ex.table(T_MEMSET)
    used[T_MEMSET] = t
    if not t:
        return
    cols = ex.columns(t)
    wanted = _common(ex, t, cols)
    wanted.update(bytes=ex.require(t, cols, "bytes"), mem=ex.opt(cols, "memKind"))
    mem = _mem_kinds(ex)
    for r in ex.rows(t, cols, wanted):
        name = f"Memset ({mem.get(int(r['mem']), '?')})" if r["mem"] is not None else "Memset"
        start, end = int(r["start"]), int(r["end"])
        out.append(GpuActivity(kind="memset", name=name, start_ns=start, duration_ns=max(end - start, 0),
                               device=r["device"], stream=r["stream"], correlation_id=r["corr"],
                               launch_ns=_launch(starts, _pid(r["pid"]), r["corr"]),
                               bytes=int(r["bytes"]) if r["bytes"] is not None else None))


def _nvtx(ex: _Export, notes: list[str], used: dict[str, str | None]) -> list[Range]:
    t = ex.table(T_NVTX)
    used[T_NVTX] = t
    if not t:
        notes.append(f"no {T_NVTX} table: the capture has no NVTX ranges (none were emitted, or --trace "
                     "did not include nvtx)")
        return []
    cols = ex.columns(t)
    text_cols = [c for c in (ex.opt(cols, "text"), ex.opt(cols, "textId")) if c]
    if not text_cols:
        ex.require(t, cols, "text", "textId")
    wanted = {"start": ex.require(t, cols, "start"), "end": ex.require(t, cols, "end"),
              "type": ex.require(t, cols, "eventType"), "text": ex.opt(cols, "text"),
              "text_id": ex.opt(cols, "textId"), "tid": ex.opt(cols, "globalTid"), "domain": ex.opt(cols, "domainId")}
    types = ex.enum("ENUM_NSYS_EVENT_TYPE")
    if types:
        range_types = {i for i, n in types.items() if n in NVTX_RANGE_TYPES.values()}
        domain_create = {i for i, n in types.items() if n == "NvtxDomainCreate"}
    else:
        range_types, domain_create = set(NVTX_RANGE_TYPES), {NVTX_DOMAIN_CREATE}
    rows = ex.rows(t, cols, wanted)
    domains: dict[tuple[int | None, int], str] = {}
    for r in rows:
        if r["type"] in domain_create and r["domain"] is not None:
            label = r["text"] if r["text"] is not None else ex.text(r["text_id"])
            if label:
                domains[(_pid(r["tid"]), int(r["domain"]))] = label
    out: list[Range] = []
    skipped: dict[str, int] = defaultdict(int)
    open_ranges = 0
    for r in rows:
        if r["type"] not in range_types:
            if r["type"] not in domain_create:
                skipped[types.get(r["type"], str(r["type"]))] += 1
            continue
        if r["end"] is None:
            open_ranges += 1
            continue
        text = r["text"] if r["text"] is not None else ex.text(r["text_id"])
        dom = None
        if r["domain"] not in (None, 0):
            dom = domains.get((_pid(r["tid"]), int(r["domain"]))) or f"domain {r['domain']}"
        out.append(Range(text=text or "", start_ns=int(r["start"]), end_ns=int(r["end"]),
                         thread_id=_tid(r["tid"]), domain=dom))
    if not out:
        notes.append(f"{t} has no push/pop or start/end ranges")
    if skipped:
        notes.append(f"{t}: skipped non-range events " + ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items())))
    if open_ranges:
        notes.append(f"{t}: {open_ranges} range(s) without an end (still open when the capture stopped) skipped")
    return out


def _devices(ex: _Export) -> list[dict[str, Any]]:
    """``TARGET_INFO_GPU`` rows: ``id`` (the CUDA device id via ``TARGET_INFO_CUDA_DEVICE`` where mapped, else
    nsys's GPU id), ``gpu_id``, ``name``, ``bus_location``, ``uuid``, ``chip_name``, ``sm_count``,
    ``total_memory_bytes``, ``memory_bandwidth_bytes_per_s``, ``clock_rate_hz``, ``compute_capability``."""
    t = ex.table("TARGET_INFO_GPU")
    if not t:
        return []
    cols = ex.columns(t)
    if "id" not in cols:
        return []
    cuda: dict[int, int] = {}
    if tc := ex.table("TARGET_INFO_CUDA_DEVICE"):
        cc = ex.columns(tc)
        if "gpuid" in cc and "cudaid" in cc:
            cuda = {int(g): int(c) for g, c in ex.conn.execute(f'SELECT "{cc["gpuid"]}", "{cc["cudaid"]}" FROM "{tc}"')}
    fields = {"name": "name", "busLocation": "bus_location", "uuid": "uuid", "chipName": "chip_name",
              "smCount": "sm_count", "totalMemory": "total_memory_bytes", "memoryBandwidth": "memory_bandwidth_bytes_per_s",
              "clockRate": "clock_rate_hz", "computeMajor": "_cmaj", "computeMinor": "_cmin"}
    wanted: dict[str, str | None] = {"id": cols["id"], **{v: ex.opt(cols, k) for k, v in fields.items()}}
    out = []
    for r in ex.rows(t, cols, wanted):
        d: dict[str, Any] = {"id": cuda.get(int(r["id"]), int(r["id"])), "gpu_id": int(r["id"])}
        d.update({k: v for k, v in r.items() if k not in ("id", "_cmaj", "_cmin") and v is not None})
        if r["_cmaj"] is not None:
            d["compute_capability"] = f"{r['_cmaj']}.{r['_cmin'] if r['_cmin'] is not None else 0}"
        out.append(d)
    return out
