"""Access control: every page driven as a viewer offers no action; a forged action (the page made to offer
it anyway) is refused by the role check and changes nothing; an editor is offered them. Plus the identity
sources (trusted proxy, first user), the banner, and who started a job / wrote a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.dashboard.conftest import Seeded, page

#: Labels of every action control on the pages (buttons and form submits).
ACTION_LABELS = {"Start benchmark", "Register", "Queue export", "Delete", "Cancel this job", "Cancel job", "Import",
                 "Save report"}


def _as(at: Any, name: str, role: str) -> Any:
    from db.access import Identity

    at.session_state["_enginescope_identity"] = Identity(name, role, "proxy")
    return at


def _actions(at: Any) -> set[str]:
    labels = {b.label for b in at.button} | {b.label for b in at.get("form_submit_button")}
    return labels & ACTION_LABELS


def _counts(url: str) -> tuple[int, int, int, bool]:
    from db.models import Job, Model, Report
    from db.session import session_scope

    with session_scope(url) as s:
        return (s.execute(select(func.count()).select_from(Job)).scalar_one(),
                s.execute(select(func.count()).select_from(Model)).scalar_one(),
                s.execute(select(func.count()).select_from(Report)).scalar_one(),
                any(s.execute(select(Job.cancel_requested)).scalars()))


PAGES = ["models", "new_benchmark", "jobs", "compare", "reports", "layers", "kernels", "tensorrt_import", "llm",
         "metrics_help"]


@pytest.fixture
def running(seeded: Seeded) -> Seeded:
    from db.models import Job
    from db.session import session_scope

    with session_scope(seeded.url) as s:
        s.get(Job, seeded.job_id).status = "running"  # so Jobs and LLM pages would offer Cancel
    return seeded


@pytest.mark.parametrize("name", PAGES)
def test_a_viewer_is_offered_no_action(running: Seeded, name: str) -> None:
    at = _as(page(name), "vera@example.com", "viewer")
    if name == "llm":
        at.query_params["job"] = str(running.job_id)
    at.run()
    assert not at.exception, at.exception
    assert _actions(at) == set(), name
    assert not at.get("file_uploader"), name
    before = _counts(running.url)
    assert before[3] is False


@pytest.mark.parametrize(("name", "actions"), [
    ("models", {"Register", "Queue export", "Delete"}),
    ("new_benchmark", {"Start benchmark"}),
    ("jobs", {"Cancel this job"}),
    ("compare", {"Save report"}),
    ("llm", {"Start benchmark"}),
])
def test_an_editor_is_offered_them(running: Seeded, name: str, actions: set[str]) -> None:
    at = _as(page(name), "ed@example.com", "editor").run()
    assert not at.exception, at.exception
    assert actions <= _actions(at)


def _forge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every page offer every action whatever the role (a page that forgot to hide a button, or a
    widget event sent by hand): the role check at the action must still refuse."""
    from dashboard import auth

    monkeypatch.setattr(auth, "can", lambda action, url=None: True)


def test_forged_actions_are_refused_and_change_nothing(running: Seeded, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    _forge(monkeypatch)
    before = _counts(running.url)

    at = _as(page("new_benchmark"), "vera", "viewer").run()
    at.button(key="newbench_submit").click().run()
    assert any("Refused" in e.value and "vera is a viewer" in e.value for e in at.error)

    at = _as(page("jobs"), "vera", "viewer").run()
    at.button(key="jobs_cancel").click().run()
    assert any("'cancel' needs the editor role" in e.value for e in at.error)

    at = _as(page("models"), "vera", "viewer").run()
    at.text_input(key="models_server_path").set_value(str(tmp_path / "x.onnx")).run()
    at.button(key="models_register_path").click().run()
    assert any("'upload' needs the editor role" in e.value for e in at.error)
    at = _as(page("models"), "vera", "viewer").run()  # the refusal stopped that run: open the page again
    at.checkbox(key=f"models_delete_confirm_{running.model_id}").check().run()
    at.button(key="models_delete").click().run()
    assert any("'delete' needs the editor role" in e.value for e in at.error)

    at = _as(page("compare"), "vera", "viewer").run()
    at.text_input(key="compare_save_title").set_value("forged")
    at.get("form_submit_button")[0].click().run()
    assert any("'save_report' needs the editor role" in e.value for e in at.error)

    assert _counts(running.url) == before  # no job, model, report or cancel flag appeared


def test_jobs_and_reports_record_who(running: Seeded) -> None:
    from db import reports
    from db.models import Job, Report
    from db.session import session_scope

    at = _as(page("new_benchmark"), "ed@example.com", "editor").run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at = _as(page("compare"), "ed@example.com", "editor").run()
    at.text_input(key="compare_save_title").set_value("fp16 vs fp32")
    at.get("form_submit_button")[0].click().run()
    assert not at.error, [e.value for e in at.error]
    with session_scope(running.url) as s:
        job = s.execute(select(Job).order_by(Job.id.desc())).scalars().first()
        rep = s.execute(select(Report)).scalars().one()
        assert job.created_by == "ed@example.com" and job.origin == "dashboard"
        assert rep.author == "ed@example.com"  # signed in: the author is who saved it
    assert reports.list_reports(running.url, author="ed@")[0]["title"] == "fp16 vs fp32"


def test_cli_jobs_record_the_os_user(es_env: str) -> None:
    from db.jobs import cli_user, start_inline_job, submit_job
    from db.models import Job
    from db.session import session_scope

    a = submit_job("clock_check", {}, origin="cli")
    b = start_inline_job("clock_check", {})
    with session_scope(es_env) as s:
        assert s.get(Job, a).created_by == cli_user() == s.get(Job, b).created_by
    assert cli_user().startswith("cli:")


def test_app_banner_when_authentication_is_off(es_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import PAGES as PAGES_DIR

    monkeypatch.delenv("ENGINESCOPE_AUTH", raising=False)
    at = AppTest.from_file(str(PAGES_DIR.parent / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Authentication is off" in w.value for w in at.sidebar.warning)


def test_proxy_mode_without_a_trusted_connection_is_refused(es_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import PAGES as PAGES_DIR

    monkeypatch.setenv("ENGINESCOPE_AUTH", "proxy")
    monkeypatch.delenv("ENGINESCOPE_TRUSTED_PROXY", raising=False)
    at = AppTest.from_file(str(PAGES_DIR.parent / "app.py"), default_timeout=60).run()
    assert not at.exception and any("ENGINESCOPE_TRUSTED_PROXY" in e.value for e in at.error)
    monkeypatch.setenv("ENGINESCOPE_TRUSTED_PROXY", "10.0.0.5")
    at = AppTest.from_file(str(PAGES_DIR.parent / "app.py"), default_timeout=60).run()
    assert any("does not come from the trusted proxy (10.0.0.5)" in e.value for e in at.error)
    assert not at.button  # nothing of the app is drawn


def test_proxy_identity_rules(es_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.auth import proxy_identity

    monkeypatch.setenv("ENGINESCOPE_TRUSTED_PROXY", "10.0.0.5, localhost")
    assert "does not come from the trusted proxy" in proxy_identity("10.9.9.9", {"X-Forwarded-User": "mallory"})
    assert "sent no X-Forwarded-User header" in proxy_identity("10.0.0.5", {})
    first = proxy_identity("10.0.0.5", {"X-Forwarded-User": "ada@example.com"})
    second = proxy_identity(None, {"X-Forwarded-User": "bob@example.com"})  # a proxy on this host
    assert (first.name, first.role) == ("ada@example.com", "editor")  # the first user
    assert (second.name, second.role) == ("bob@example.com", "viewer")
    monkeypatch.setenv("ENGINESCOPE_PROXY_HEADER", "X-Auth-Request-Email")
    assert proxy_identity("10.0.0.5", {"X-Auth-Request-Email": "bob@example.com"}).role == "viewer"
