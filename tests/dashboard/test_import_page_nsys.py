"""The import page with Nsight Systems captures: an export built here dropped with a trtexec-shaped file, the
per-capture counts and notes shown; a bad nsys file is one error and nothing stored."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from tests.dashboard.conftest import page
from tests.nsys_builders import build_export


def _frame(at, column: str):  # type: ignore[no-untyped-def]
    return next(e.value for e in at.dataframe if column in e.value.columns)


def test_import_nsys_export_on_page(es_env: str, tmp_path: Path) -> None:
    from db.models import Run
    from db.session import session_scope

    data = build_export(tmp_path / "cap.sqlite", nvtx_table=None).read_bytes()
    at = page("tensorrt_import").run()
    assert not at.exception
    assert at.title[0].value == "Import results"
    at.file_uploader(key="trtimport_files").set_value([("cap.sqlite", data, "application/octet-stream")]).run()
    at.button(key="trtimport_go").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = _frame(at, "CUDA API calls")
    row = table.iloc[0]
    assert (row["kernels"], row["memcpy"], row["memset"], row["CUDA API calls"], row["NVTX ranges"]) == (4, 3, 1, 8, 0)
    assert row["nsys"] == "2025.5.2" and row["schema"] == "3.24.0"
    assert any("no NVTX_EVENTS table" in e.value for e in at.info)
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Run).where(Run.source == "import:nsys")).scalar_one() == 1


def test_bad_nsys_file_on_page(es_env: str, tmp_path: Path) -> None:
    from db.models import Run
    from db.session import session_scope

    data = build_export(tmp_path / "bad.sqlite", drop={"CUPTI_ACTIVITY_KIND_KERNEL": ["start"]}).read_bytes()
    at = page("tensorrt_import").run()
    at.file_uploader(key="trtimport_files").set_value([("bad.sqlite", data, "application/octet-stream")]).run()
    at.button(key="trtimport_go").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "bad.sqlite" in errors and "CUPTI_ACTIVITY_KIND_KERNEL" in errors and "start" in errors
    with session_scope(es_env) as s:
        assert s.execute(select(func.count()).select_from(Run)).scalar_one() == 0
