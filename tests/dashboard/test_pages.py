"""AppTests of the dashboard pages (streamlit.testing.v1.AppTest) against a temporary, seeded database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.dashboard.conftest import Seeded, make_mlp_onnx, page


def _texts(at) -> str:  # type: ignore[no-untyped-def]
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader",
                                  "header") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def _frame(at, *columns: str):  # type: ignore[no-untyped-def]
    """The first dataframe element whose columns include all of ``columns`` (dataframes carry no key)."""
    for e in at.dataframe:
        df = e.value
        if all(c in df.columns for c in columns):
            return df
    raise AssertionError(f"no dataframe with columns {columns}: {[list(e.value.columns) for e in at.dataframe]}")


def _charts(at) -> list:  # type: ignore[no-untyped-def]
    return [e for e in at.get("plotly_chart")]


def test_models_page_empty_db(es_env: str) -> None:
    at = page("models").run()
    assert not at.exception
    assert "No models yet" in _texts(at)


def test_models_page_inspection(seeded: Seeded) -> None:
    at = page("models").run()
    assert not at.exception
    text = _texts(at)
    assert "mlp.onnx" in text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Opset"] == "17"
    assert metrics["IR version"] == "8"
    assert metrics["Operators"] == "4"
    inputs = _frame(at, "symbolic dims")
    assert list(inputs["name"]) == ["x"]
    assert inputs["shape"][0] == "batch x 16"
    assert inputs["symbolic dims"][0] == "batch"
    ops = _frame(at, "op", "count")
    assert dict(zip(ops["op"], ops["count"])) == {"MatMul": 2, "Add": 1, "Relu": 1}


def test_models_register_path_and_errors(es_env: str, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_text("this is not a protobuf")
    at = page("models").run()
    at.text_input(key="models_server_path").input(str(bad)).run()
    at.button(key="models_register_path").click().run()
    assert not at.exception
    assert any("broken.onnx" in e.value for e in at.error), [e.value for e in at.error]
    good = make_mlp_onnx(tmp_path / "good.onnx")
    at.text_input(key="models_server_path").input(str(good)).run()
    at.button(key="models_register_path").click().run()
    assert not at.exception
    assert any("Added model" in s.value for s in at.success)
    assert _frame(at, "symbolic dims")["name"][0] == "x"


def test_models_flags_nondefault_domain(es_env: str, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft", name="gelu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    path = tmp_path / "contrib.onnx"
    onnx.save(model, str(path))
    from db.store import add_model

    add_model([path], "contrib.onnx", url=es_env)
    at = page("models").run()
    assert not at.exception
    assert any("com.microsoft" in w.value and "TensorRT" in w.value for w in at.warning)
    ops = _frame(at, "op", "count")
    assert bool(ops["likely unsupported by TensorRT"][0]) is True


def test_models_delete_with_confirmation(seeded: Seeded) -> None:
    from db.models import Model, Run
    from db.session import session_scope

    at = page("models").run()
    assert at.button(key="models_delete").disabled  # not confirmed yet
    at.checkbox(key=f"models_delete_confirm_{seeded.model_id}").check().run()
    at.button(key="models_delete").click().run()
    assert not at.exception
    with session_scope(seeded.url) as s:
        assert s.get(Model, seeded.model_id) is None
        runs = s.execute(select(Run)).scalars().all()
    assert len(runs) == 3  # results are kept without the model
    assert "No models yet" in _texts(at)


def test_new_benchmark_submits_queued_job(seeded: Seeded) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("new_benchmark").run()
    assert not at.exception
    # the symbolic batch dim is prefilled as "use the batch size"
    assert at.number_input(key="newbench_dim_batch").value == 0
    at.multiselect(key="newbench_precisions_onnxruntime").set_value(["fp32", "fp16", "int8-dynamic"])
    at.text_input(key="newbench_batches").input("1, 4")
    at.number_input(key="newbench_iterations").set_value(20)
    at.run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.kind == "model_bench" and job.device == "cpu" and job.model_id == seeded.model_id
    assert job.spec["precisions"] == ["fp32", "fp16", "int8-dynamic"] and job.spec["device"] == "cpu"
    assert job.spec["batch_sizes"] == [1, 4]
    assert job.spec["iterations"] == 20


def test_new_benchmark_shows_field_errors(seeded: Seeded) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("new_benchmark").run()
    at.text_input(key="newbench_batches").input("0, 100000").run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    # the form's label, never the spec's field name
    assert "Batch sizes: batch size 0 is outside 1..65536" in errors and "batch_sizes" not in errors
    at.text_input(key="newbench_batches").input("one").run()
    at.button(key="newbench_submit").click().run()
    assert "Batch sizes: 'one' must be integers" in " ".join(e.value for e in at.error)
    with session_scope(seeded.url) as s:
        assert s.execute(select(Job).where(Job.status == "queued")).first() is None


def test_new_benchmark_choices_are_the_catalogues(seeded: Seeded) -> None:
    """Engines, device kinds and precisions offered are profiles.catalog's, per engine and device kind."""
    from profiles import catalog

    at = page("new_benchmark").run()
    assert not at.exception
    onnx_engines = catalog.engines_for_format("onnx")  # the seeded model is an ONNX file
    assert list(at.radio(key="newbench_engine").options) == [catalog.engine_info(e).label for e in onnx_engines]
    for engine in onnx_engines:
        at.radio(key="newbench_engine").set_value(engine).run()
        assert not at.exception, at.exception
        kinds = catalog.devices(engine)
        device_radio = at.radio(key=f"newbench_device_{engine}")
        assert list(device_radio.options) == [{"cpu": "CPU", "cuda": "CUDA GPU"}[k] for k in kinds]
        for kind in kinds:
            device_radio.set_value(kind).run()
            assert not at.exception, at.exception
            key = f"newbench_precisions_{engine}" + ("" if kind == kinds[0] else f"_{kind}")
            device = "cpu" if kind == "cpu" else "cuda:0"
            assert list(at.multiselect(key=key).options) == catalog.precisions(engine, device)
            assert at.multiselect(key=key).value == ["fp32"]


def test_new_benchmark_on_a_cuda_device_queues_on_that_device(seeded: Seeded) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("new_benchmark").run()
    at.radio(key="newbench_device_onnxruntime").set_value("cuda").run()
    at.number_input(key="newbench_gpu").set_value(1).run()
    assert "int8-dynamic" not in at.multiselect(key="newbench_precisions_onnxruntime_cuda").options  # CPU only
    at.multiselect(key="newbench_precisions_onnxruntime_cuda").set_value(["fp32", "fp16"]).run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value and "cuda:1" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.device == "cuda:1" and job.spec["device"] == "cuda:1" and job.spec["precisions"] == ["fp32", "fp16"]


def test_new_benchmark_inputs_npz_upload(seeded: Seeded, tmp_path: Path) -> None:
    """An inputs .npz upload is stored under uploads/ and its server path goes into the spec; a file whose
    key is not a model input is refused naming the key, and no job is queued."""
    import io
    from pathlib import Path as P

    import numpy as np

    from db.models import Job
    from db.session import session_scope

    def npz_bytes(**arrays: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    at = page("new_benchmark").run()
    at.file_uploader(key="newbench_inputs").set_value(
        ("bad.npz", npz_bytes(images=np.zeros((4, 16), np.float32)), "application/octet-stream")).run()
    assert not at.exception, at.exception
    assert any("key 'images' is not an input" in e.value for e in at.error), [e.value for e in at.error]
    at.button(key="newbench_submit").click().run()
    with session_scope(seeded.url) as s:
        assert s.execute(select(Job).where(Job.status == "queued")).first() is None
    x = np.random.default_rng(0).standard_normal((6, 16)).astype(np.float32)
    at.file_uploader(key="newbench_inputs").set_value(("real.npz", npz_bytes(x=x), "application/octet-stream"))
    at.text_input(key="newbench_batches").input("1, 2")
    at.run()
    assert "6 samples" in _texts(at)
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    stored = P(job.spec["inputs_npz"])
    assert stored.parent.name == "uploads" and stored.name.startswith("inputs-")
    with np.load(stored) as z:
        assert np.array_equal(z["x"], x)


def test_new_benchmark_tensorrt_explains_missing(seeded: Seeded, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("ENGINESCOPE_TRTEXEC", raising=False)
    at = page("new_benchmark").run()
    at.radio(key="newbench_engine").set_value("tensorrt").run()
    assert not at.exception
    from profiles.trt_spec import detect_tensorrt

    if detect_tensorrt().available:  # a machine with TensorRT: the options are live
        return
    assert any("TensorRT" in w.value for w in at.warning)
    at.button(key="newbench_submit").click().run()
    assert any("TensorRT is not available" in e.value for e in at.error)


def test_jobs_page_and_cancel(seeded: Seeded) -> None:
    from db.jobs import submit_job
    from db.models import Job
    from db.session import session_scope

    queued = submit_job("model_bench", {"model_id": seeded.model_id}, device="cpu", model_id=seeded.model_id,
                        url=seeded.url)
    at = page("jobs").run()
    assert not at.exception
    table = _frame(at, "kind", "status", "progress")
    assert set(table["id"]) == {seeded.job_id, queued}
    assert at.selectbox(key="jobs_selected").value == queued  # newest first
    assert f"Job {queued}: queued" in _texts(at)
    at.button(key="jobs_cancel").click().run()
    assert not at.exception
    with session_scope(seeded.url) as s:
        job = s.get(Job, queued)
        assert job.cancel_requested is True and job.status == "cancelled"
    # a running job gets the flag only (its worker stops the child)
    with session_scope(seeded.url) as s:
        s.get(Job, seeded.job_id).status = "running"
    at.selectbox(key="jobs_selected").set_value(seeded.job_id).run()
    at.button(key="jobs_cancel").click().run()
    with session_scope(seeded.url) as s:
        job = s.get(Job, seeded.job_id)
        assert job.cancel_requested is True and job.status == "running"


def test_jobs_page_shows_failure_and_log(seeded: Seeded, tmp_path: Path) -> None:
    from db.models import Job
    from db.session import session_scope

    log = tmp_path / "job.log"
    log.write_text("line 1\nTraceback: boom\n")
    with session_scope(seeded.url) as s:
        j = s.get(Job, seeded.job_id)
        j.status, j.error, j.log_path = "failed", "EngineError: onnxruntime failed on node fc1/MatMul", str(log)
    at = page("jobs").run()
    assert not at.exception
    assert any("fc1/MatMul" in e.value for e in at.error)
    assert any("Traceback: boom" in c.value for c in at.code)


def test_compare_page_marks_invalid_and_picks_valid_fastest(seeded: Seeded) -> None:
    at = page("compare").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    # int8-dynamic is faster but numerically invalid: fp16 is the fastest valid variant
    assert metrics["Fastest valid variant (p50)"] == "onnxruntime / fp16 b1"
    assert any("numerically invalid" in w.value for w in at.warning)
    table = _frame(at, "p50 ms", "CI low ms")
    assert list(table.loc[table["precision"] == "int8-dynamic", "valid"]) == ["NO (invalid)"]
    assert "session.run on host tensors" in _texts(at)
    assert len(_charts(at)) == 3
    acc = _frame(at, "max abs err")
    assert set(acc["valid"]) == {"yes", "NO (invalid)"}
    at.radio(key="compare_dist_kind").set_value("violin").run()
    assert not at.exception


def test_compare_page_without_runs(mlp_model) -> None:  # type: ignore[no-untyped-def]
    at = page("compare").run()
    assert not at.exception
    assert "no runs yet" in _texts(at)


def test_layers_page_side_by_side(seeded: Seeded) -> None:
    at = page("layers").run()
    assert not at.exception
    assert at.metric[0].value == "4"
    at.multiselect(key="layers_compare").set_value([seeded.run_ids["fp32"], seeded.run_ids["fp16"]]).run()
    assert not at.exception
    table = _frame(at, "layer", "op_type")
    assert len(table) == 4
    # the selected (reference) run is the newest, int8-dynamic; the fp32 run is 200/90 times slower per layer
    fp32_col = [c for c in table.columns if c.endswith("speed-up") and "fp32" in c][0]
    assert abs(float(table[fp32_col][0]) - 90 / 200) < 1e-9
    assert set(table[[c for c in table.columns if c.endswith("match")][0]]) == {"name"}
    assert len(_charts(at)) == 4


def test_layers_page_empty(es_env: str) -> None:
    at = page("layers").run()
    assert not at.exception
    assert "No per-layer timings yet" in _texts(at)


def test_metrics_help_renders_doc(es_env: str) -> None:
    at = page("metrics_help").run()
    assert not at.exception
    assert "TTFT" in _texts(at) and "Goodput" in _texts(at)


def test_app_starts_and_explains_the_machine(es_env: str) -> None:
    """The whole app (st.navigation) runs on a fresh home and says which engines/GPU are missing."""
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import REPO

    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception
    sidebar = " ".join(str(e.value) for e in at.sidebar.markdown) + " ".join(str(e.value) for e in at.sidebar.caption)
    assert "ONNX Runtime" in sidebar and "TensorRT" in sidebar and "vLLM" in sidebar and "NVIDIA GPU" in sidebar
    assert "No models yet" in _texts(at)  # the default page is Models


def test_models_upload_with_external_data(es_env: str, tmp_path: Path) -> None:
    """Dropping the .onnx alone names the missing external data file and stores nothing; dropping it with
    its data file stores the model and lists the external data."""
    import onnx

    from db.models import Model
    from db.session import session_scope

    src = make_mlp_onnx(tmp_path / "src.onnx", hidden=64)
    out = tmp_path / "ext"
    out.mkdir()
    model = onnx.load(str(src))
    onnx.save(model, str(out / "big.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="big.onnx.data", size_threshold=0)
    onnx_bytes, data_bytes = (out / "big.onnx").read_bytes(), (out / "big.onnx.data").read_bytes()

    at = page("models").run()
    at.file_uploader(key="models_upload").upload("big.onnx", onnx_bytes).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "big.onnx.data" in errors, errors
    with session_scope(es_env) as s:
        assert s.execute(select(Model)).first() is None
    at.file_uploader(key="models_upload").set_value([("big.onnx", onnx_bytes, "application/octet-stream"),
                                                     ("big.onnx.data", data_bytes, "application/octet-stream")]).run()
    assert not at.exception
    assert any("Added model #1 big.onnx" in s.value for s in at.success), [e.value for e in at.error]
    ext = _frame(at, "location")
    assert set(ext["location"]) == {"big.onnx.data"} and len(ext) == 3


def test_compare_page_shows_gpu_energy_clocks_and_warnings(seeded: Seeded) -> None:
    from sqlalchemy import update

    from db.models import Run, RunMetric
    from db.session import session_scope

    rid = seeded.run_ids["fp16"]
    with session_scope(seeded.url) as s:
        s.execute(update(Run).where(Run.id == rid).values(config={
            "device": "cuda:0", "cuda_graph": True, "telemetry_window": {"energy_method": "energy_counter"},
            "telemetry_warnings": ["GPU clocks were limited during the measured window (sw_power_cap in 40% of samples)"],
            "engine_warnings": ["CPU fallback: 1 of 9 node(s) did not run on CUDAExecutionProvider: shape (Shape)"]}))
        s.add_all([RunMetric(run_id=rid, name="energy_per_inference_j", value=0.0123, unit="J"),
                   RunMetric(run_id=rid, name="avg_power_w", value=412.5, unit="W"),
                   RunMetric(run_id=rid, name="sm_clock_median_mhz", value=1980.0, unit="MHz"),
                   RunMetric(run_id=rid, name="mem_clock_median_mhz", value=3201.0, unit="MHz")])
    at = page("compare").run()
    assert not at.exception, at.exception
    table = _frame(at, "J / inference", "avg W", "device")
    gpu = table.loc[table["run"] == rid].iloc[0]
    assert (gpu["device"], gpu["CUDA graph"], gpu["J / inference"], gpu["avg W"], gpu["SM MHz (median)"]) == (
        "cuda:0", "yes", 0.0123, 412.5, 1980.0)
    assert set(table.loc[table["run"] != rid, "device"]) == {"cpu"}
    warnings = [w.value for w in at.warning]
    assert any("sw_power_cap in 40% of samples" in w for w in warnings)
    assert any("did not run on CUDAExecutionProvider" in w for w in warnings)
    assert "over the measured window only" in _texts(at) and "energy_counter" in _texts(at)


def test_new_benchmark_cuda_graph_option_reaches_the_spec(seeded: Seeded) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("new_benchmark").run()
    assert all(c.key != "newbench_cuda_graph" for c in at.checkbox)  # CPU: not offered
    at.radio(key="newbench_device_onnxruntime").set_value("cuda").run()
    at.checkbox(key="newbench_cuda_graph").check().run()
    at.multiselect(key="newbench_precisions_onnxruntime_cuda").set_value(["fp16"]).run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.spec["device"] == "cuda:0" and job.spec["cuda_graph"] is True and job.spec["precisions"] == ["fp16"]
