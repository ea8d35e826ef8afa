"""``--ncu-top N`` through the model_bench job without a GPU: ONNX Runtime's ``cuda:0`` target is its CPU provider
(as in test_kernel_capture_job), ncu is a stand-in that prints a recorded ncu table (the real child under a fake ncu
is tested in test_ncu.py), and the ceilings come from a stand-in for the CUDA-event measurement. What is tested: the
ncu run is its own run, linked and labelled, with the top kernels' metric rows, the ceilings as run metrics, the CSV
as an artifact, in bench --json; the measured run is untouched; a failed ncu keeps the measured run; plan() refuses
--ncu-top on a CPU device or where no ncu exists."""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from onnx_builders import linear_model, save_plain
from test_kernel_capture_job import _run_job, cuda_on_cpu, no_nvml  # noqa: F401 - fixtures

from profiles.ncu import DRAM_READ, DURATION, NCU_METRICS

CEILINGS = {"matrix_flop_per_s": 7.9e14, "copy_bytes_per_s": 4.3e12, "gpu": "test GPU", "source": "test stand-in"}


def _fake_ncu(tmp_path: Path, rc: int = 0) -> str:
    header = ["ID", "Kernel Name", "Block Size", "Grid Size", *NCU_METRICS]
    rows = [("0", "void big_gemm<float>(int)", "900", "1000"), ("1", "copy_kernel", "50", "400"),
            ("2", "void big_gemm<float>(int)", "1100", "1000"), ("3", "tiny", "5", "8")]
    lines = [",".join(f'"{h}"' for h in header), ",".join('"ns"' if h == DURATION else '""' for h in header)]
    for rid, name, dur, rd in rows:
        vals = {"ID": rid, "Kernel Name": name, "Block Size": "(128, 1, 1)", "Grid Size": "(4, 1, 1)",
                DURATION: dur, DRAM_READ: rd, "sm__sass_thread_inst_executed_op_ffma_pred_on.sum": "500"}
        lines.append(",".join(f'"{vals.get(h, "")}"' for h in header))
    (tmp_path / "table.csv").write_text("==PROF== Connected\n" + "\n".join(lines) + "\n")
    script = tmp_path / "ncu"
    script.write_text(f"#!{sys.executable}\nimport sys\n"
                      f"if sys.argv[1:] == ['--version']:\n    print('Version 2025.3.1.0'); sys.exit(0)\n"
                      f"sys.stdout.write(open({str(tmp_path / 'table.csv')!r}).read())\nsys.exit({rc})\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.fixture
def ceilings(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine_runner.ncu_capture as nc

    monkeypatch.setattr(nc, "measure_ceilings", lambda device_index=0: dict(CEILINGS))


def test_ncu_run_is_its_own_run_with_top_kernels(es_env: str, tmp_path: Path, no_nvml: None, cuda_on_cpu: Any,
                                                 ceilings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.kernels import load_ncu, profiled_label
    from db.models import Artifact, LatencySample, Run, RunMetric
    from db.session import session_scope
    from engine_runner.commands.bench import collect_results

    monkeypatch.setenv("ENGINESCOPE_NCU", _fake_ncu(tmp_path))
    job_id, events = _run_job(es_env, tmp_path, cuda_on_cpu.Engine(), monkeypatch, kernel_iterations=0, ncu_top=2)
    with session_scope(es_env) as s:
        measured, ncu = list(s.execute(select(Run).where(Run.job_id == job_id).order_by(Run.id)).scalars())
        samples = {r.id: s.execute(select(func.count()).select_from(LatencySample)
                                   .where(LatencySample.run_id == r.id)).scalar_one() for r in (measured, ncu)}
        metrics = {m.name: (m.value, m.unit) for m in s.execute(select(RunMetric).where(RunMetric.run_id == ncu.id)).scalars()}
        arts = [a.kind for a in s.execute(select(Artifact).where(Artifact.run_id == ncu.id)).scalars()]
        assert measured.status == ncu.status == "succeeded"
        assert ncu.label == profiled_label(measured.label, "ncu")
        assert (ncu.engine, ncu.precision, ncu.batch_size) == (measured.engine, measured.precision, measured.batch_size)
        m_cfg, n_cfg = dict(measured.config), dict(ncu.config)
    prof = n_cfg["profiler"]
    assert prof["tool"] == "ncu" and prof["of_run_id"] == measured.id and prof["version"] == "2025.3.1.0"
    assert prof["metrics"] == list(NCU_METRICS) and prof["launches_profiled"] == 4 and prof["stored_kernels"] == 3
    assert "--clock-control" in prof["command"] and prof["command"][-1] == "REQUEST"
    assert n_cfg["ceilings"]["source"] == "test stand-in"
    assert metrics == {"ceiling_matrix_flop_per_s": (7.9e14, "flop/s"), "ceiling_copy_bytes_per_s": (4.3e12, "bytes/s")}
    assert arts == ["ncu_csv"]
    assert samples[ncu.id] == 0 and samples[measured.id] >= 20
    assert m_cfg["ncu_capture"] == {"ncu_run_id": ncu.id, "kernels": 3, "launches_profiled": 4}
    rows = load_ncu(ncu.id, es_env)
    # top 2 names by summed duration: big_gemm (2000 ns over 2 launches) and copy_kernel (50); "tiny" dropped
    assert [r["name"] for r in rows] == ["void big_gemm<float>(int)", "copy_kernel", "void big_gemm<float>(int)"]
    assert rows[0]["duration_ns"] == 900 and rows[0]["flop"] == 1000.0 and rows[0]["arithmetic_intensity"] == 1.0
    assert rows[0]["short_name"] == "big_gemm" and rows[0]["category"] == "gemm/conv"
    doc = collect_results(job_id, es_env)
    assert [r["run_id"] for r in doc["runs"]] == [measured.id]
    (pr,) = doc["profiled_runs"]
    assert pr["tool"] == "ncu" and pr["ncu_kernels"] == 3 and pr["ncu_launches_profiled"] == 4
    assert any(k == "info" and f"stored as run {ncu.id}" in m for k, m in events)


def test_failed_ncu_keeps_the_measured_run(es_env: str, tmp_path: Path, no_nvml: None, cuda_on_cpu: Any,
                                           ceilings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.models import Run
    from db.session import session_scope

    monkeypatch.setenv("ENGINESCOPE_NCU", _fake_ncu(tmp_path, rc=3))
    job_id, events = _run_job(es_env, tmp_path, cuda_on_cpu.Engine(), monkeypatch, kernel_iterations=0, ncu_top=2)
    with session_scope(es_env) as s:
        (run,) = list(s.execute(select(Run).where(Run.job_id == job_id)).scalars())
        assert run.status == "succeeded"
        assert run.config["ncu_error"].startswith("ncu capture failed: EngineError: --ncu-top: ncu exited with 3")
    assert any(k == "warning" and "measured run is kept" in m for k, m in events)


def test_plan_refuses_ncu_top_on_cpu_and_without_ncu(es_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from db.store import add_model
    from engine_runner.jobs.model_bench import plan
    from profiles.errors import InputError
    from profiles.specs import BenchSpec, validate_spec

    model_id = int(add_model(save_plain(linear_model(0), tmp_path / "m.onnx")).id)
    with pytest.raises(InputError, match=r"--ncu-top 3: Nsight Compute profiles CUDA kernels \(got --device cpu"):
        plan(validate_spec(BenchSpec, {"model_id": model_id, "ncu_top": 3}), es_env)
    monkeypatch.setenv("ENGINESCOPE_NCU", str(tmp_path / "no-such-ncu"))
    import engine_runner.engines.onnxruntime as ortx

    monkeypatch.setattr(ortx.Engine, "check_device", lambda self, device, cuda_graph=False, model_path=None: None)
    with pytest.raises(InputError, match=r"--ncu-top 3: Nsight Compute \(ncu\) is not installed on this machine"):
        plan(validate_spec(BenchSpec, {"model_id": model_id, "device": "cuda:0", "ncu_top": 3}), es_env)
    # the dashboard plans with devices_here=False: the worker's machine checks its own ncu
    plan(validate_spec(BenchSpec, {"model_id": model_id, "device": "cuda:0", "ncu_top": 3}), es_env, devices_here=False)
