"""``bench --repeats`` and ``enginescope compare`` as a user runs them: the real console script, real ONNX
Runtime runs (interleaved repeats, samples carrying their repeat index), and the regression gate's
verdict, JSON and exit codes (0 / 1 / 2) on those runs and on a database with a known slowdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ort_graphs import build_cnn
from test_bench_cli import FAST, enginescope

pytestmark = pytest.mark.integration

COMPARE_KEYS = {"metric", "baseline", "candidate", "ratio", "ci95", "verdict", "comparable", "differences"}


@pytest.fixture(scope="module")
def repeated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("repeats")
    model = build_cnn(tmp / "cnn.onnx")
    res = enginescope(tmp / "home", "bench", str(model), "--precision", "fp32", "--precision", "int8-dynamic",
                      "--batch", "2", "--repeats", "3", "--json", *FAST)
    assert res.returncode == 0, res.stderr
    return tmp / "home", json.loads(res.stdout)


def test_repeats_are_interleaved_and_stored_per_repeat(repeated: tuple[Path, dict]) -> None:
    from db.models import LatencySample
    from db.session import session_scope

    home, doc = repeated
    runs = doc["runs"]
    assert [(r["precision"], r["batch_size"], r["status"]) for r in runs] == [
        ("fp32", 2, "succeeded"), ("int8-dynamic", 2, "succeeded")]
    # one run per configuration; its places in the job's order alternate with the other's (A B A B A B)
    assert runs[0]["repeats"]["positions"] == [0, 2, 4] and runs[1]["repeats"]["positions"] == [1, 3, 5]
    url = f"sqlite:///{home / 'enginescope.db'}"
    with session_scope(url) as s:
        for r in runs:
            rep = r["repeats"]
            assert rep["count"] == 3 and [p["repeat"] for p in rep["per_repeat"]] == [0, 1, 2]
            counts = dict(s.execute(select(LatencySample.repeat, func.count()).where(
                LatencySample.run_id == r["run_id"]).group_by(LatencySample.repeat)).all())
            assert counts == {p["repeat"]: p["samples"] for p in rep["per_repeat"]}
            assert min(counts.values()) >= 20
            # the run's summary is over every repeat's samples
            assert r["samples"] == sum(counts.values())


def test_compare_a_run_with_itself(repeated: tuple[Path, dict]) -> None:
    home, doc = repeated
    rid = doc["runs"][0]["run_id"]
    res = enginescope(home, "compare", str(rid), str(rid), "--json")
    assert res.returncode == 0, res.stderr
    v = json.loads(res.stdout)
    assert COMPARE_KEYS <= set(v)
    assert v["metric"] == "latency_p50" and v["ratio"] == pytest.approx(1.0)
    assert v["ci95"][0] <= 1.0 <= v["ci95"][1] and v["verdict"] == "no significant difference"
    assert v["comparable"] is True and v["differences"] == [] and v["repeats"] == [3, 3]
    assert v["within_run_only"] is False and v["regression"] is False


def test_compare_two_precisions_lists_the_differences(repeated: tuple[Path, dict]) -> None:
    home, doc = repeated
    fp32, int8 = (r["run_id"] for r in doc["runs"])
    res = enginescope(home, "compare", str(fp32), str(int8), "--metric", "throughput", "--max-regression", "1000",
                      "--json")
    assert res.returncode == 0, res.stderr
    v = json.loads(res.stdout)
    fields = {d["field"]: d for d in v["differences"]}
    assert fields["precision"]["baseline"] == "fp32" and fields["precision"]["candidate"] == "int8-dynamic"
    assert not any(d["blocking"] for d in v["differences"]) and v["comparable"] is True
    assert v["unit"] == "items/s" and v["ci95"][0] < v["ratio"] < v["ci95"][1]
    assert v["verdict"] in ("faster", "slower", "no significant difference")
    assert v["accuracy"]["valid"] is not None  # int8-dynamic was checked against fp32
    text = enginescope(home, "compare", str(fp32), str(int8), "--max-regression", "1000")
    assert text.returncode == 0 and "differences that could explain a gap" in text.stdout
    assert "precision: fp32 -> int8-dynamic" in text.stdout and "3 repeats each" in text.stdout


@pytest.mark.parametrize(("args", "flag"), [
    (["1", "99999"], "CANDIDATE_RUN"),
    (["99999", "1"], "BASELINE_RUN"),
    (["1", "2", "--metric", "ttft_p99"], "--metric"),
    (["1", "2", "--metric", "p95"], "--metric"),
    (["1", "2", "--max-regression", "-5"], "--max-regression"),
])
def test_compare_bad_input_exits_2(repeated: tuple[Path, dict], args: list[str], flag: str) -> None:
    home, doc = repeated
    ids = [str(r["run_id"]) for r in doc["runs"]]
    argv = [{"1": ids[0], "2": ids[1]}.get(a, a) for a in args]
    res = enginescope(home, "compare", *argv)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert flag in res.stderr and "Traceback" not in res.stderr


def test_repeats_with_a_batch_sweep_is_refused(tmp_path: Path) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")
    res = enginescope(tmp_path / "home", "bench", str(model), "--batch-sweep", "--repeats", "2", *FAST)
    assert res.returncode == 2 and "--repeats" in res.stderr and "--batch-sweep" in res.stderr
    res = enginescope(tmp_path / "home", "bench", str(model), "--repeats", "0", *FAST)
    assert res.returncode == 2 and "--repeats" in res.stderr


def test_a_shape_whose_first_dim_is_the_batch_names_shape(tmp_path: Path) -> None:
    model = build_cnn(tmp_path / "cnn.onnx")  # input x [N, 3, 8, 8]: N is symbolic
    res = enginescope(tmp_path / "home", "bench", str(model), "--shape", "x=1000000000x3x8x8", *FAST)
    assert res.returncode == 2 and "--shape x=" in res.stderr and "batch size" in res.stderr, res.stderr
    assert "--batch:" not in res.stderr and "Traceback" not in res.stderr


def test_the_gate_exits_1_on_a_known_slowdown(tmp_path: Path) -> None:
    """A database with a candidate whose every repeat is ~80% slower than the baseline's (fp32 at 200 us vs
    int8 at 110 us, 3 drifting repeats each): the gate fails it; within a 100% allowance it passes."""
    from db.session import migrate
    from db.store import add_model
    from tests.unit.test_report_db import seed_repeats
    from tests.dashboard.conftest import make_mlp_onnx

    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'enginescope.db'}"
    migrate(url)
    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=url)
    ids = seed_repeats(url, int(model.id)).run_ids
    res = enginescope(home, "compare", str(ids["int8-qdq"]), str(ids["fp32"]), "--max-regression", "5", "--json")
    assert res.returncode == 1, res.stderr
    v = json.loads(res.stdout)
    assert v["verdict"] == "slower" and v["regression"] is True and v["ci95"][0] > 1.05
    assert enginescope(home, "compare", str(ids["int8-qdq"]), str(ids["fp32"]), "--max-regression", "100").returncode == 0
    # the other way round it is faster: never a regression
    assert enginescope(home, "compare", str(ids["fp32"]), str(ids["int8-qdq"])).returncode == 0
    # a run on another CPU is not comparable: the gate refuses to pass it (exit 2) but still prints the verdict
    from db.models import Run
    from db.session import session_scope

    with session_scope(url) as s:
        run = s.get(Run, ids["fp16"])
        run.environment = {**run.environment, "cpu": {"model": "Other CPU @ 3.0GHz", "cores_logical": 2}}
    res = enginescope(home, "compare", str(ids["fp32"]), str(ids["fp16"]), "--json")
    assert res.returncode == 2, (res.stdout, res.stderr)
    v = json.loads(res.stdout)
    assert v["verdict"] == "not comparable" and v["comparable"] is False and v["ratio"] < 1
    assert "cpu.model differs" in res.stderr and "--allow-different" in res.stderr
    assert enginescope(home, "compare", str(ids["fp32"]), str(ids["fp16"]), "--allow-different").returncode == 0
