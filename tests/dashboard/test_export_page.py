"""AppTests of the Models page's export section: the form queues an ``export`` job for the worker (the
dashboard never runs an exporter), errors name the form's labels, and an exported model shows its report."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.dashboard.conftest import page


def test_export_form_queues_a_job(es_env: str, tmp_path: Path) -> None:
    from db.models import Job
    from db.session import session_scope

    folder = tmp_path / "bert"
    folder.mkdir()
    at = page("models").run()
    at.text_input(key="models_export_source").input(str(folder))
    at.radio(key="models_export_exporter").set_value("torchscript")
    at.number_input(key="models_export_seq_len").set_value(64).run()
    at.button(key="models_export_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued export job" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(es_env) as s:
        job = s.execute(select(Job)).scalar_one()
    assert job.kind == "export" and job.status == "queued" and job.device == "cpu"
    assert job.spec["source"] == str(folder) and job.spec["exporter"] == "torchscript"
    assert job.spec["seq_len"] == 64 and job.spec["dynamic_batch"] is True and job.spec["opset"] == 18
    jobs = next(e.value for e in at.dataframe if "source" in e.value.columns)
    assert list(jobs["status"]) == ["queued"]


def test_export_form_errors(es_env: str, tmp_path: Path) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("models").run()
    at.text_input(key="models_export_source").input(str(tmp_path / "nowhere")).run()
    at.button(key="models_export_submit").click().run()
    assert "does not exist on the server" in " ".join(e.value for e in at.error)
    at.text_input(key="models_export_source").input(str(tmp_path))
    at.number_input(key="models_export_seq_len").set_value(1)
    at.text_input(key="models_export_name").input("x" * 2000).run()
    at.button(key="models_export_submit").click().run()
    assert "Display name:" in " ".join(e.value for e in at.error)
    with session_scope(es_env) as s:
        assert s.execute(select(Job)).first() is None


def test_exported_model_shows_its_report(es_env: str, tmp_path: Path) -> None:
    from db.store import add_model
    from tests.dashboard.conftest import make_mlp_onnx

    report = {"source": {"input": "/data/bert", "format": "hf", "architecture": "BertModel"},
              "exporter": {"name": "dynamo", "opset": 18, "torch_version": "2.13.0+cpu"},
              "simplifier": {"name": "onnxsim", "applied": True}, "nodes": {"before": 131, "after": 114},
              "verification": {"within_tolerance": True, "tolerance": "max abs err <= ...",
                               "example": {"max_abs_err": 7e-7, "cosine": 1.0, "shapes": {"x": [2, 16]}},
                               "other_shapes": None},
              "warnings": ["input 'token_type_ids' is not used by the exported graph"]}
    add_model(make_mlp_onnx(tmp_path / "mlp.onnx"), "bert.onnx", url=es_env, meta={"export": report})
    at = page("models").run()
    assert not at.exception, at.exception
    text = " ".join(str(e.value) for kind in ("markdown", "caption", "warning") for e in getattr(at, kind))
    assert "Exported" in text and "/data/bert" in text and "nodes 131 -> 114" in text and "onnxsim" in text
    assert "max abs err 7e-07" in text and "token_type_ids" in text
