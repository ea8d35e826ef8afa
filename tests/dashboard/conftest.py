"""Fixtures of the dashboard AppTests: a tiny ONNX model built here and a database seeded with a real
model row (added through ``db.store.add_model``) plus a finished job with runs, raw latency samples,
summaries from ``profiles.stats``, throughput, per-layer timings and accuracy rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "dashboard" / "app_pages"


def make_mlp_onnx(path: Path, hidden: int = 32) -> Path:
    """A 2-layer MLP ``x[batch, 16] -> y[batch, 4]`` (MatMul, Add, Relu, MatMul) with a symbolic batch dim."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, hidden)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, 4)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1/MatMul"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1/Add"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["y"], name="fc2/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="enginescope-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@dataclass
class Seeded:
    url: str
    model_id: int
    job_id: int
    run_ids: dict[str, int]  # precision -> run id


def seed_results(url: str, model_id: int) -> Seeded:
    """Insert a succeeded ``model_bench`` job with fp32/fp16/int8-dynamic runs at batch 1; the
    int8-dynamic run is numerically invalid (all-zero outputs) while being the fastest."""
    from db.models import AccuracyResult, Job, LatencySample, LayerTiming, Run, RunMetric, Summary, utcnow
    from db.session import session_scope
    from profiles.stats import summarize_ns

    rng = np.random.default_rng(1)
    medians_ns = {"fp32": 200_000, "fp16": 150_000, "int8-dynamic": 90_000}
    run_ids: dict[str, int] = {}
    with session_scope(url) as s:
        job = Job(kind="model_bench", spec={"model_id": model_id, "engine": "onnxruntime",
                                           "precisions": list(medians_ns), "batch_sizes": [1]},
                  status="succeeded", progress=1.0, progress_message="done", device="cpu", model_id=model_id,
                  started_at=utcnow(), finished_at=utcnow(), origin="dashboard")
        s.add(job)
        s.flush()
        for precision, med in medians_ns.items():
            valid = precision != "int8-dynamic"
            run = Run(job_id=job.id, model_id=model_id, engine="onnxruntime", engine_version="1.32.0",
                      precision=precision, batch_size=1, shapes={"x": [1, 16]}, status="succeeded",
                      timing_window="session.run on host tensors (CPU EP, no copies)", numerically_valid=valid,
                      finished_at=utcnow())
            s.add(run)
            s.flush()
            samples = (med + rng.normal(0, med * 0.05, 200)).astype(np.int64)
            s.add_all([LatencySample(run_id=run.id, seq=i, latency_ns=int(v)) for i, v in enumerate(samples)])
            sm = summarize_ns(samples, "ms")
            s.add(Summary(run_id=run.id, metric="latency_ms", **sm.as_dict()))
            thr = 1e9 / float(np.mean(samples))
            s.add(RunMetric(run_id=run.id, name="throughput_per_s", value=thr, unit="1/s"))
            s.add(RunMetric(run_id=run.id, name="items_per_s", value=thr, unit="items/s"))
            scale = med / 200_000
            for idx, (name, op, ms) in enumerate([("fc1/MatMul", "MatMul", 0.08), ("fc1/Add", "Add", 0.02),
                                                  ("relu", "Relu", 0.01), ("fc2/MatMul", "MatMul", 0.05)]):
                s.add(LayerTiming(run_id=run.id, idx=idx, name=name, op_type=op, avg_ms=ms * scale,
                                  median_ms=ms * scale, count=200, details={"inputs": [{"name": "a", "shape": [1, 16]}]}))
            run_ids[precision] = run.id
        ref = run_ids["fp32"]
        for precision, rid in run_ids.items():
            if rid == ref:
                continue
            bad = precision == "int8-dynamic"
            s.add(AccuracyResult(run_id=rid, reference_run_id=ref, output_name="y",
                                 max_abs_err=3.1 if bad else 1e-3, max_rel_err=1.0 if bad else 1e-3,
                                 cosine=0.0 if bad else 0.9999, all_zero=bad, valid=not bad))
        job_id = job.id
    return Seeded(url=url, model_id=model_id, job_id=job_id, run_ids=run_ids)


@pytest.fixture
def mlp_model(es_env: str, tmp_path: Path) -> tuple[str, int]:
    """(db url, model id) of the MLP added through ``db.store.add_model``."""
    from db.store import add_model

    model = add_model([make_mlp_onnx(tmp_path / "mlp.onnx")], "mlp.onnx", url=es_env)
    return es_env, int(model.id)


@pytest.fixture
def seeded(mlp_model: tuple[str, int]) -> Seeded:
    url, model_id = mlp_model
    return seed_results(url, model_id)


def page(name: str):  # type: ignore[no-untyped-def]
    """An AppTest of ``dashboard/app_pages/<name>.py``."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)


def rerun_fragments(at):  # type: ignore[no-untyped-def]
    """Rerun only the fragments the last run registered, as the browser does when a fragment's
    ``run_every`` timer fires (the rest of the page is not executed). AppTest has no public call for
    this, so its script runner is handed the ``RerunData`` that Streamlit's AppSession builds for such a
    rerun (``fragment_id`` + ``is_auto_rerun``) in place of the full-app rerun it queues when built; the
test fails if the run was not fragment-scoped. Returns the element tree of that run: the fragments'
    elements, plus the whole page when a fragment called ``st.rerun(scope="app")``."""
    from unittest import mock

    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests
    from streamlit.testing.v1 import local_script_runner as lsr
    from streamlit.testing.v1.element_tree import parse_tree_from_messages

    from streamlit.runtime.scriptrunner import ScriptRunnerEvent

    fragment_ids = list(at._fragment_storage._fragments)
    assert fragment_ids, "the page registered no fragment"
    events: list[Any] = []

    def run(self, widget_state=None, query_params=None, timeout=3, page_hash="", context_info=None):  # type: ignore[no-untyped-def]
        self._requests = ScriptRequests()  # drop the full-app rerun the runner queues when it is built
        for fid in fragment_ids:
            self.request_rerun(RerunData(widget_states=widget_state, page_script_hash=page_hash,
                                         context_info=context_info, fragment_id=fid, is_auto_rerun=True))
        try:
            if not self._script_thread:
                self.start()
            lsr.require_widgets_deltas(self, timeout)
        finally:
            self.join()
        events.extend(self.events)
        return parse_tree_from_messages(self.forward_msgs())

    with mock.patch.object(lsr.LocalScriptRunner, "run", run):
        at.run()
    # the first run must have been the fragment alone (a later full run comes only from st.rerun)
    first_end = next(e for e in events if e.name.endswith(("_STOPPED_WITH_SUCCESS", "_STOPPED_FOR_RERUN",
                                                          "_STOPPED_WITH_COMPILE_ERROR")))
    assert first_end in (ScriptRunnerEvent.FRAGMENT_STOPPED_WITH_SUCCESS, ScriptRunnerEvent.SCRIPT_STOPPED_FOR_RERUN), \
        f"not a fragment-scoped run: {first_end}"
    return at
