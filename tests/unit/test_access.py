"""db.access (roles, first user, the one check) and ``enginescope users``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


def test_first_user_is_an_editor_then_viewers(es_env: str) -> None:
    from db import access

    assert access.resolve("ada@example.com", "test").role == "editor"
    assert access.resolve("bob@example.com", "test").role == "viewer"
    assert access.resolve("ada@example.com", "test").role == "editor"  # stored
    assert [u["name"] for u in access.list_users()] == ["ada@example.com"]  # unknown viewers are not stored
    access.grant("bob@example.com", "editor", by="ada@example.com")
    assert access.resolve("bob@example.com", "test").role == "editor"
    assert access.revoke("bob@example.com") and not access.revoke("bob@example.com")
    assert access.resolve("bob@example.com", "test").role == "viewer"


def test_the_check(es_env: str) -> None:
    from db.access import ACTIONS, AccessDenied, Identity, allowed, check

    viewer, editor = Identity("v", "viewer", "proxy"), Identity("e", "editor", "proxy")
    for action in ACTIONS:
        assert allowed(editor, action)
        assert allowed(viewer, action) is (action == "read")
    with pytest.raises(AccessDenied, match="v is a viewer: 'start' needs the editor role") as ei:
        check(viewer, "start")
    assert ei.value.action == "start" and ei.value.identity == viewer
    assert not allowed(Identity("x", "admin?", "proxy"), "read")  # an unknown role allows nothing


@pytest.mark.parametrize(("name", "match"), [("", "empty"), ("a\nb", "control characters"), ("a\x00b", "control"),
                                             ("x" * 300, "at most 256")])
def test_bad_names_are_refused(es_env: str, name: str, match: str) -> None:
    from db import access
    from profiles.errors import InputError

    with pytest.raises(InputError, match=match):
        access.resolve(name, "the X-Forwarded-User header")
    assert access.list_users() == []


def test_nfc_and_nfd_spellings_are_one_user(es_env: str) -> None:
    from db import access

    access.grant("Ren\u00e9e", "editor")
    assert access.resolve("Rene\u0301e", "test").role == "editor"  # NFD of the same name


def test_users_cli(es_env: str) -> None:
    from engine_runner.cli import app

    r = CliRunner()
    out = r.invoke(app, ["users", "grant", "ada@example.com", "--role", "editor"])
    assert out.exit_code == 0 and "ada@example.com is now an editor" in out.output
    out = r.invoke(app, ["users", "list", "--json"])
    assert out.exit_code == 0 and '"granted_by": "cli:' in out.output
    bad = r.invoke(app, ["users", "grant", "bob", "--role", "admin"])
    assert bad.exit_code == 2 and "--role 'admin'" in bad.output
    missing = r.invoke(app, ["users", "revoke", "nobody"])
    assert missing.exit_code == 2 and "NAME" in missing.output
    assert r.invoke(app, ["users", "revoke", "ada@example.com"]).exit_code == 0


def test_report_link_uses_the_address_the_browser_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dashboard on --port 8650 (or behind a proxy) links its reports there, not at the default 8501."""
    import types

    from dashboard import ui

    monkeypatch.delenv("ENGINESCOPE_DASHBOARD_URL", raising=False)
    monkeypatch.setattr(ui.st, "context", types.SimpleNamespace(url="http://10.0.0.2:8650/compare?x=1"))
    assert ui.report_link(3) == "http://10.0.0.2:8650/reports?report=3"
    monkeypatch.setattr(ui.st, "context", types.SimpleNamespace(url=None))  # no browser session
    assert ui.report_link(3) == "http://localhost:8501/reports?report=3"
    monkeypatch.setenv("ENGINESCOPE_DASHBOARD_URL", "https://es.example.com/")
    assert ui.report_link(3) == "https://es.example.com/reports?report=3"
