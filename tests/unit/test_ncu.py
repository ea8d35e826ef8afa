"""Nsight Compute: the CSV parser on a real H200 ncu output, FLOP/byte accounting, the roofline, the capture child and
the ncu orchestration (a fake ncu that runs the real child and prints a recorded table)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from profiles.errors import EngineError, ParseError
from profiles.ncu import (
    DRAM_READ,
    DRAM_WRITE,
    DURATION,
    FP_INSTRUCTIONS,
    NCU_METRICS,
    OCCUPANCY,
    TENSOR_OP_FLOP,
    parse_ncu_csv,
    roofline_point,
    top_by_duration,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "kernels"


def _probe_csv() -> str:
    return gzip.open(DATA / "h200_probe_ncu_raw.csv.gz", "rt").read()


def test_real_h200_csv_parses_every_row_with_values_from_the_file() -> None:
    text = _probe_csv()
    kernels = parse_ncu_csv(text)
    # the file's own rows (skip ==PROF== lines, header, units)
    table = [r for r in csv.reader(io.StringIO("\n".join(ln for ln in text.splitlines() if not ln.startswith("=="))))]
    header, units, body = table[0], table[1], table[2:]
    assert len(kernels) == len(body) == 12
    col = header.index("gpu__time_duration.sum")
    assert units[col] == "ns"
    for k, row in zip(kernels, body):
        assert k.duration_ns == int(float(row[col].replace(",", "")))
        assert k.name == row[header.index("Kernel Name")]
        assert k.achieved_occupancy_pct == pytest.approx(float(row[header.index(OCCUPANCY)]))
        assert k.grid == [int(x) for x in row[header.index("Grid Size")].strip("()").split(",")]
    assert kernels[0].short_name == "vectorized_elementwise_kernel"
    assert kernels[0].category == "elementwise/reduction"
    # the probe used sections, not EngineScope's metric list: no DRAM byte counters -> no intensity, no roofline point
    assert kernels[0].dram_bytes is None and kernels[0].arithmetic_intensity is None
    assert roofline_point(kernels[0], 7.9e14, 4.3e12) is None


def _table(rows: list[dict[str, str]], with_units: bool = True) -> str:
    header = ["ID", "Process ID", "Kernel Name", "Block Size", "Grid Size", *NCU_METRICS]
    lines = ["==PROF== Connected to process 1", ",".join(f'"{h}"' for h in header)]
    if with_units:
        unit = {DURATION: "ns", DRAM_READ: "byte", DRAM_WRITE: "byte", OCCUPANCY: "%"}
        lines.append(",".join(f'"{unit.get(h, "")}"' for h in header))
    for r in rows:
        lines.append(",".join(f'"{r.get(h, "")}"' for h in header))
    return "\n".join(lines) + "\n==PROF== Disconnected from process 1\n"


def test_flop_bytes_intensity_and_roofline_from_counters() -> None:
    ffma = "sm__sass_thread_inst_executed_op_ffma_pred_on.sum"
    fadd = "sm__sass_thread_inst_executed_op_fadd_pred_on.sum"
    text = _table([
        {"ID": "0", "Kernel Name": "void gemm_kernel<float>(int)", "Block Size": "(256, 1, 1)", "Grid Size": "(10, 2, 1)",
         DURATION: "1,000,000", ffma: "1,000,000", fadd: "500", DRAM_READ: "1,000", DRAM_WRITE: "1,000",
         "sm__ops_path_tensor_src_bf16_dst_fp32.sum": "4,000,000", OCCUPANCY: "50.5"},
        {"ID": "1", "Kernel Name": "copy", DURATION: "10", DRAM_READ: "100", DRAM_WRITE: "100"},
    ])
    k, c = parse_ncu_csv(text)
    assert FP_INSTRUCTIONS[ffma] == 2
    assert k.flop == pytest.approx(2 * 1_000_000 + 500 + TENSOR_OP_FLOP * 4_000_000)
    assert k.dram_bytes == 2000.0
    assert k.arithmetic_intensity == pytest.approx(k.flop / 2000.0)
    assert k.flop_per_s == pytest.approx(k.flop / 1e-3)
    assert k.grid == [10, 2, 1] and k.block == [256, 1, 1]
    assert k.achieved_occupancy_pct == 50.5
    assert c.flop is None and c.arithmetic_intensity is None  # no FP counter printed for it
    # roofline: ridge = peak / bandwidth; intensity ~3000 FLOP/B is right of a 200 FLOP/B ridge -> compute-bound
    p = roofline_point(k, peak_flop_per_s=8e14, peak_bytes_per_s=4e12)
    assert p is not None and p.ridge_intensity == 200.0 and p.bound == "compute"
    assert p.attainable_flop_per_s == 8e14 and p.pct_of_roof == pytest.approx(100 * k.flop_per_s / 8e14)
    low = roofline_point(k, peak_flop_per_s=8e14, peak_bytes_per_s=1e9)  # ridge 8e5 -> memory-bound
    assert low is not None and low.bound == "memory" and low.attainable_flop_per_s == pytest.approx(1e9 * k.arithmetic_intensity)


def test_units_are_converted_and_missing_units_row_is_accepted() -> None:
    text = _table([{"ID": "0", "Kernel Name": "k", DURATION: "2", DRAM_READ: "1"}])
    text = text.replace('"ns"', '"usecond"').replace('"byte"', '"Kbyte"')
    (k,) = parse_ncu_csv(text)
    assert k.duration_ns == 2000 and k.dram_bytes == 1000.0
    (k2,) = parse_ncu_csv(_table([{"ID": "3", "Kernel Name": "k", DURATION: "7"}], with_units=False))
    assert k2.duration_ns == 7 and k2.launch_id == 3


def test_top_by_duration_keeps_every_launch_of_the_top_names() -> None:
    text = _table([{"ID": str(i), "Kernel Name": name, DURATION: str(d)}
                   for i, (name, d) in enumerate([("a", 5), ("b", 100), ("a", 5), ("c", 7), ("a", 5)])])
    ks = parse_ncu_csv(text)
    assert [k.name for k in top_by_duration(ks, 2)] == ["a", "b", "a", "a"]  # a: 15 ns total, b: 100, c: 7


def test_not_ncu_output_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "out.csv"
    f.write_text("==PROF== No kernels were profiled.\n")
    with pytest.raises(ParseError, match=r"out\.csv.*no '\"ID\",\.\.\.' header"):
        parse_ncu_csv(f)


def _tiny_onnx(tmp_path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from onnx_builders import linear_model, save_plain

    return save_plain(linear_model(), tmp_path / "lin.onnx")


def _request(tmp_path: Path) -> Path:
    from engine_runner.profile_child import write_request
    from profiles.specs import BenchSpec

    model = _tiny_onnx(tmp_path)
    spec = BenchSpec(model_id=1, engine="onnxruntime", precisions=["fp32"], batch_sizes=[2])
    return write_request(tmp_path / "req.json", engine="onnxruntime", model_path=model, model_format="onnx",
                         precision="fp32", batch=2, shapes={"X": [2, 4]}, spec=spec.model_dump(mode="json"),
                         inputs={"X": np.ones((2, 4), np.float32)}, warmup=1, iterations=2)


def test_profile_child_runs_a_real_engine(tmp_path: Path) -> None:
    from engine_runner.profile_child import main

    req = _request(tmp_path)
    assert json.loads(req.read_text())["iterations"] == 2
    assert main([str(req)]) == 0
    assert main([]) == 2


def _fake_ncu(tmp_path: Path, table: str, rc: int = 0) -> str:
    """A stand-in for ncu: runs the real child command it is given (the argv after ncu's options), then prints a
    recorded table, as ncu does after the profiled process exits."""
    (tmp_path / "table.csv").write_text(table)
    script = tmp_path / "ncu"
    script.write_text(f"""#!{sys.executable}
import subprocess, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("NVIDIA (R) Nsight Compute Command Line Profiler\\nVersion 2025.3.1.0 (build 1)"); sys.exit(0)
i = args.index("-m") - 1  # python -m engine_runner.profile_child REQUEST
child = subprocess.run(args[i:])
sys.stdout.write(open({str(tmp_path / 'table.csv')!r}).read())
sys.exit({rc} or child.returncode)
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_run_ncu_runs_the_child_and_keeps_top_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine_runner.ncu_capture import find_ncu, run_ncu

    table = _table([{"ID": str(i), "Kernel Name": n, DURATION: d} for i, (n, d) in enumerate([("x", "9"), ("y", "1")])])
    fake = _fake_ncu(tmp_path, table)
    monkeypatch.setenv("ENGINESCOPE_NCU", fake)
    assert find_ncu() == fake
    cap = run_ncu(_request(tmp_path), top=1, workdir=tmp_path / "w")
    assert [k.name for k in cap.kernels] == ["x"] and cap.all_launches == 2
    assert cap.version == "2025.3.1.0"
    assert cap.command[:3] == [fake, "--clock-control", "none"]
    assert "--nvtx-include" in cap.command and "enginescope_capture/" in cap.command
    assert cap.csv_path.read_text().count("\n") > 2


def test_run_ncu_failures_are_engine_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine_runner.ncu_capture import run_ncu

    monkeypatch.setenv("ENGINESCOPE_NCU", _fake_ncu(tmp_path, "==PROF== No kernels were profiled.\n"))
    with pytest.raises(EngineError, match=r"--ncu-top: .*ncu_raw\.csv: not ncu --csv.*iterations run unmarked"):
        run_ncu(_request(tmp_path), top=3, workdir=tmp_path / "w")
    monkeypatch.setenv("ENGINESCOPE_NCU", _fake_ncu(tmp_path, "", rc=7))
    with pytest.raises(EngineError, match="exited with 7"):
        run_ncu(_request(tmp_path), top=3, workdir=tmp_path / "w2")
    monkeypatch.setenv("ENGINESCOPE_NCU", str(tmp_path / "missing-ncu"))
    from profiles.errors import EngineUnavailableError

    with pytest.raises(EngineUnavailableError, match="ENGINESCOPE_NCU"):
        run_ncu(_request(tmp_path), top=3, workdir=tmp_path / "w3")
    assert os.environ["ENGINESCOPE_NCU"].endswith("missing-ncu")
