"""Nsight Compute (``ncu``) kernel metrics: the metrics EngineScope asks for, the parser of ``ncu --csv --page raw``,
and each kernel's place on a roofline.

What ``engine_runner.ncu_capture`` runs::

    ncu --clock-control none --target-processes all --csv --page raw --print-units base
        --metrics <NCU_METRICS> --nvtx --nvtx-include enginescope_ncu/ ... python -m engine_runner.profile_child ...

``--clock-control none`` leaves the GPU clocks as they are (what the unprofiled run saw) instead of ncu's default of
locking them to base clocks. Each metric (names as Nsight Compute's metrics reference defines them):

- ``gpu__time_duration.sum``: kernel duration, ns;
- ``sm__warps_active.avg.pct_of_peak_sustained_active``: achieved occupancy, % of the SM's maximum warps;
- ``sm__throughput.avg.pct_of_peak_sustained_elapsed``: SM throughput ("Compute (SM) Throughput"), % of peak;
- ``dram__throughput.avg.pct_of_peak_sustained_elapsed``: DRAM throughput, % of peak;
- ``dram__bytes_read.sum`` + ``dram__bytes_write.sum``: DRAM bytes moved, bytes;
- ``sm__sass_thread_inst_executed_op_{f,h,d}{add,mul,fma}_pred_on.sum``: non-tensor floating-point instructions
  executed by threads (an FMA counts as 2 FLOP, as Nsight Compute's roofline section counts it);
- ``sm__ops_path_tensor_src_*``: tensor-core operations by input type; multiplied by :data:`TENSOR_OP_FLOP`
  (checked on the H200 against a bf16 GEMM of known FLOP: ``benchmarks/h200/kernels.sh``, RESULTS.md).

FLOP = non-tensor FLOP + tensor FLOP; arithmetic intensity = FLOP / DRAM bytes (the DRAM roofline);
achieved FLOP/s = FLOP / duration. :func:`roofline_point` places a kernel against measured ceilings (peak matrix
FLOP/s, copy bytes/s): attainable = min(peak, bandwidth x intensity) (Williams, Waterman, Patterson 2009).

Pure: no files written, no subprocesses.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiles.errors import ParseError
from profiles.kernels import categorize, short_name

DURATION = "gpu__time_duration.sum"
OCCUPANCY = "sm__warps_active.avg.pct_of_peak_sustained_active"
SM_PCT = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
DRAM_PCT = "dram__throughput.avg.pct_of_peak_sustained_elapsed"
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"

#: non-tensor FP instruction counters -> FLOP per instruction
FP_INSTRUCTIONS: dict[str, int] = {
    f"sm__sass_thread_inst_executed_op_{p}{op}_pred_on.sum": (2 if op == "fma" else 1)
    for p in ("f", "h", "d") for op in ("add", "mul", "fma")
}

#: tensor-core operation counters (Hopper), by input type
TENSOR_OPS = (
    "sm__ops_path_tensor_src_fp16.sum",
    "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "sm__ops_path_tensor_src_tf32_dst_fp32.sum",
    "sm__ops_path_tensor_src_fp8_sparsity_off.sum",
    "sm__ops_path_tensor_src_int8.sum",
    "sm__ops_path_tensor_src_fp64.sum",
)

#: FLOP per counted tensor operation (see the module doc: checked on the H200 bf16 GEMM).
TENSOR_OP_FLOP = 1.0

#: Every metric EngineScope asks ncu for (``--metrics``).
NCU_METRICS: tuple[str, ...] = (DURATION, OCCUPANCY, SM_PCT, DRAM_PCT, DRAM_READ, DRAM_WRITE,
                                *FP_INSTRUCTIONS, *TENSOR_OPS)

#: unit (as ncu prints it) -> factor to the base unit (ns for time, bytes for sizes); ncu's byte prefixes are SI.
_UNITS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6, "s": 1e9, "second": 1e9,
          "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12}


@dataclass
class NcuKernel:
    """One kernel launch profiled by ncu.

    Attributes:
        name: demangled kernel name (``Kernel Name``); short_name/category as ``profiles.kernels`` makes them.
        launch_id: ncu's ``ID`` (launch order within the profiled process).
        duration_ns: ``gpu__time_duration.sum``, ns.
        achieved_occupancy_pct, sm_throughput_pct, dram_throughput_pct: % (see the module doc).
        flop: FLOP of this launch (None when no FP counter was collected).
        dram_bytes: DRAM bytes read + written (None when not collected).
        arithmetic_intensity: flop / dram_bytes, FLOP/byte (None when either is missing or bytes are 0).
        flop_per_s: flop / duration, FLOP/s.
        grid, block: ``[x, y, z]``.
        metrics: every raw value of the row, ``{metric: float or str}`` (units in base units).
    """

    name: str
    launch_id: int | None
    duration_ns: int | None
    achieved_occupancy_pct: float | None
    sm_throughput_pct: float | None
    dram_throughput_pct: float | None
    flop: float | None
    dram_bytes: float | None
    arithmetic_intensity: float | None
    flop_per_s: float | None
    grid: list[int] | None = None
    block: list[int] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    short_name: str = ""
    category: str = ""

    def __post_init__(self) -> None:
        self.short_name = self.short_name or short_name(self.name)
        self.category = self.category or categorize(self.name)


def _number(text: str, unit: str) -> float | None:
    t = text.strip().replace(",", "")
    if t in ("", "n/a", "N/A"):
        return None
    try:
        v = float(t)
    except ValueError:
        return None
    return v * _UNITS.get(unit.strip().lower(), 1.0)


def _dims(text: str) -> list[int] | None:
    nums = re.findall(r"\d+", text or "")
    return [int(n) for n in nums[:3]] if len(nums) >= 3 else None


def parse_ncu_csv(source: str | Path, what: str | None = None) -> list[NcuKernel]:
    """Parse ``ncu --csv --page raw`` output (header row, units row, one row per profiled launch).

    Args:
        source: the CSV text or a path to it. Lines ncu prints around the table (``==PROF==``, ``==WARNING==``,
            the profiled program's own output before the header) are skipped.
        what: the name used in error messages (default: the path, or "ncu output").

    Returns:
        One :class:`NcuKernel` per row, in ncu's launch order. Metrics that were not collected are None.

    Raises:
        ParseError: no ``"ID","Process ID",...`` header, or no ``Kernel Name`` column, naming ``what``.
    """
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and Path(source).is_file()):
        path = Path(source)
        what = what or str(path)
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            raise ParseError(f"{what}: cannot read ncu output: {exc}") from exc
    else:
        text = str(source)
        what = what or "ncu output"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"ID"')), None)
    if start is None:
        raise ParseError(f"{what}: not ncu --csv --page raw output (no '\"ID\",...' header row); "
                         "did ncu profile any kernel? (check its --nvtx-include / -k filters)")
    rows = [r for r in csv.reader(io.StringIO("\n".join(ln for ln in lines[start:] if not ln.startswith("==")))) if r]
    header = rows[0]
    if "Kernel Name" not in header:
        raise ParseError(f"{what}: ncu table has no 'Kernel Name' column")
    # the units row (second) has an empty ID cell; ncu omits it with --print-units none
    has_units = len(rows) > 1 and rows[1][0].strip() == ""
    units = rows[1] if has_units else [""] * len(header)
    body = rows[2:] if has_units else rows[1:]
    idx = {h: i for i, h in enumerate(header)}
    out = []
    for r in body:
        if len(r) < len(header):
            continue
        vals: dict[str, Any] = {}
        for h, i in idx.items():
            num = _number(r[i], units[i] if i < len(units) else "")
            vals[h] = num if num is not None or r[i].strip() == "" else r[i]
        dur = vals.get(DURATION)
        fp = [vals.get(m) for m in FP_INSTRUCTIONS]
        tens = [vals.get(m) for m in TENSOR_OPS]
        have = [v for v in fp + tens if isinstance(v, float)]
        flop = (sum(v * w for v, w in zip(fp, FP_INSTRUCTIONS.values()) if isinstance(v, float))
                + TENSOR_OP_FLOP * sum(v for v in tens if isinstance(v, float))) if have else None
        rd, wr = vals.get(DRAM_READ), vals.get(DRAM_WRITE)
        dram = (rd or 0.0) + (wr or 0.0) if isinstance(rd, float) or isinstance(wr, float) else None
        ai = flop / dram if flop is not None and dram else None
        fps = flop / (dur / 1e9) if flop is not None and isinstance(dur, float) and dur > 0 else None
        launch = vals.get("ID")
        out.append(NcuKernel(
            name=r[idx["Kernel Name"]], launch_id=int(launch) if isinstance(launch, float) else None,
            duration_ns=int(dur) if isinstance(dur, float) else None,
            achieved_occupancy_pct=vals.get(OCCUPANCY) if isinstance(vals.get(OCCUPANCY), float) else None,
            sm_throughput_pct=vals.get(SM_PCT) if isinstance(vals.get(SM_PCT), float) else None,
            dram_throughput_pct=vals.get(DRAM_PCT) if isinstance(vals.get(DRAM_PCT), float) else None,
            flop=flop, dram_bytes=dram, arithmetic_intensity=ai, flop_per_s=fps,
            grid=_dims(r[idx["Grid Size"]]) if "Grid Size" in idx else None,
            block=_dims(r[idx["Block Size"]]) if "Block Size" in idx else None,
            metrics={k: v for k, v in vals.items() if k in NCU_METRICS or k in ("ID", "Stream", "Device", "CC")}))
    return out


def top_by_duration(kernels: list[NcuKernel], n: int) -> list[NcuKernel]:
    """The launches of the ``n`` kernel names with the largest summed duration (all their launches kept, in launch
    order), so a table of "top N kernels" shows every profiled launch of each."""
    tot: dict[str, int] = {}
    for k in kernels:
        tot[k.name] = tot.get(k.name, 0) + (k.duration_ns or 0)
    keep = set(sorted(tot, key=lambda name: -tot[name])[:max(n, 0)])
    return [k for k in kernels if k.name in keep]


@dataclass(frozen=True)
class RooflinePoint:
    """A kernel against the roofline: ``attainable_flop_per_s`` = min(peak, bandwidth x intensity);
    ``bound`` = ``memory`` left of the ridge (intensity < peak / bandwidth) else ``compute``;
    ``pct_of_roof`` = achieved / attainable x 100."""

    arithmetic_intensity: float
    achieved_flop_per_s: float
    attainable_flop_per_s: float
    ridge_intensity: float
    bound: str
    pct_of_roof: float


def roofline_point(kernel: NcuKernel, peak_flop_per_s: float, peak_bytes_per_s: float) -> RooflinePoint | None:
    """Place ``kernel`` against the ceilings (FLOP/s, bytes/s, both > 0). None when the kernel has no FLOP or DRAM
    byte count (e.g. a pure copy kernel with 0 FLOP has no place on a FLOP roofline)."""
    if (kernel.arithmetic_intensity is None or kernel.flop_per_s is None or kernel.flop_per_s <= 0
            or peak_flop_per_s <= 0 or peak_bytes_per_s <= 0):
        return None
    ai = kernel.arithmetic_intensity
    ridge = peak_flop_per_s / peak_bytes_per_s
    roof = min(peak_flop_per_s, peak_bytes_per_s * ai)
    return RooflinePoint(arithmetic_intensity=ai, achieved_flop_per_s=kernel.flop_per_s, attainable_flop_per_s=roof,
                         ridge_intensity=ridge, bound="memory" if ai < ridge else "compute",
                         pct_of_roof=100.0 * kernel.flop_per_s / roof)
