"""db.nsys_tool and the report path of db.nsys_import, driven by a fake ``nsys`` script written here.

The fake answers ``--version`` like nsys 2025.5.2 and, for ``export --type sqlite --output OUT REPORT``, copies an
export built by tests.nsys_builders to OUT (a stand-in for nsys's converter: the parsing itself is tested on real
and built exports in test_nsys_export.py). Every call's argv is logged so tests can check what ran.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from db import nsys_tool
from profiles.errors import EngineError, InputError
from tests.nsys_builders import build_export

FAKE = """#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_NSYS_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if args == ["--version"]:
    print("NVIDIA Nsight Systems version " + os.environ.get("FAKE_NSYS_VERSION", "2025.5.2.266-255336380738v0"))
    sys.exit(0)
if args[:3] == ["export", "--type", "sqlite"] and args[3] == "--output":
    if os.environ.get("FAKE_NSYS_FAIL"):
        print(os.environ["FAKE_NSYS_FAIL"], file=sys.stderr)
        sys.exit(1)
    shutil.copyfile(os.environ["FAKE_NSYS_SOURCE"], args[4])
    print("Processing [" + args[5] + "] with [/opt/nvidia/nsight-systems/exporter]... ")
    sys.exit(0)
print("unknown command", args, file=sys.stderr)
sys.exit(2)
"""


@pytest.fixture
def fake_nsys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake nsys set as $ENGINESCOPE_NSYS; returns its argv log (one JSON list per call)."""
    exe = tmp_path / "bin" / "nsys"
    exe.parent.mkdir()
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    log = tmp_path / "nsys_calls.jsonl"
    monkeypatch.setenv("ENGINESCOPE_NSYS", str(exe))
    monkeypatch.setenv("FAKE_NSYS_LOG", str(log))
    monkeypatch.setenv("FAKE_NSYS_SOURCE", str(build_export(tmp_path / "src" / "export.sqlite")))
    return log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _report(path: Path, body: bytes = b"\x00NSYS-REPORT\x00compressed...") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def test_find_and_version(fake_nsys: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    exe = os.environ["ENGINESCOPE_NSYS"]
    assert nsys_tool.find_nsys() == exe
    assert nsys_tool.nsys_version() == "2025.5.2.266"
    monkeypatch.delenv("ENGINESCOPE_NSYS")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert nsys_tool.find_nsys() is None
    monkeypatch.setenv("PATH", str(Path(exe).parent))  # no env var: nsys on PATH
    assert nsys_tool.find_nsys() == exe
    assert nsys_tool.is_newer("2026.1.1", "2025.5.2.266") and not nsys_tool.is_newer("2025.5.2", "2025.5.2.266")
    assert not nsys_tool.is_newer(None, "2025.5.2")


def test_export_argv_and_output(fake_nsys: Path, tmp_path: Path) -> None:
    rep = _report(tmp_path / "caps" / "run 1.nsys-rep")
    out = nsys_tool.export_sqlite(rep, tmp_path / "out")
    assert out == tmp_path / "out" / "run 1.sqlite" and out.read_bytes()[:16] == b"SQLite format 3\x00"
    assert _calls(fake_nsys)[-1] == ["export", "--type", "sqlite", "--output", str(out), str(rep)]


def test_report_newer_than_local_nsys_is_refused(fake_nsys: Path, tmp_path: Path) -> None:
    rep = _report(tmp_path / "new.nsys-rep", b"\x00\x01/opt/nvidia/nsight-systems/2026.2.1/target-linux-x64\x00")
    assert nsys_tool.report_version(rep) == "2026.2.1"
    with pytest.raises(InputError) as err:
        nsys_tool.export_sqlite(rep, tmp_path / "out")
    msg = str(err.value)
    assert "new.nsys-rep" in msg and "2026.2.1" in msg and "2025.5.2.266" in msg
    assert all(c[0] != "export" for c in _calls(fake_nsys))  # refused before converting


def test_newer_version_named_by_nsys_error(fake_nsys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NSYS_FAIL", "Error: the report was created by a newer version (2026.1.3) and cannot be opened.")
    rep = _report(tmp_path / "r.qdrep")
    with pytest.raises(InputError, match=r"r.qdrep: the report was written by Nsight Systems 2026.1.3, newer than this machine's nsys 2025.5.2.266"):
        nsys_tool.export_sqlite(rep, tmp_path / "out")
    monkeypatch.setenv("FAKE_NSYS_FAIL", "Error: file is corrupt")
    with pytest.raises(EngineError, match=r"r.qdrep: `nsys export --type sqlite` failed \(exit 1, nsys 2025.5.2.266\): Error: file is corrupt"):
        nsys_tool.export_sqlite(rep, tmp_path / "out")


def test_without_nsys_names_file_and_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINESCOPE_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    rep = _report(tmp_path / "cap.nsys-rep")
    with pytest.raises(InputError) as err:
        nsys_tool.export_sqlite(rep, tmp_path / "out")
    msg = str(err.value)
    assert str(rep) in msg and "nsys export --type sqlite" in msg and "ENGINESCOPE_NSYS" in msg
    monkeypatch.setenv("ENGINESCOPE_NSYS", str(tmp_path / "nope" / "nsys"))
    with pytest.raises(InputError, match="nope/nsys does not exist"):
        nsys_tool.export_sqlite(rep, tmp_path / "out")


def test_import_reports_from_a_folder(fake_nsys: Path, es_env: str, tmp_path: Path) -> None:
    """A folder: both report extensions globbed, each converted once, the report and its export kept as artifacts;
    a .sqlite beside a report of the same stem is that report's export and not imported twice."""
    from sqlalchemy import select

    from db.models import Artifact
    from db.nsys_import import import_nsys
    from db.session import session_scope

    folder = tmp_path / "captures"
    _report(folder / "a.nsys-rep", b"A")
    _report(folder / "b.qdrep", b"B")
    (folder / "a.sqlite").write_bytes(Path(os.environ["FAKE_NSYS_SOURCE"]).read_bytes())
    (folder / "notes.txt").write_text("ignored")
    runs = import_nsys([folder], url=es_env)
    assert [r["file"] for r in runs] == ["a.nsys-rep", "b.qdrep"]
    assert all(r["kernels"] == 4 and r["nvtx_ranges"] == 4 and not r["existing"] for r in runs)
    assert sum(1 for c in _calls(fake_nsys) if c[0] == "export") == 2
    with session_scope(es_env) as s:
        kinds = sorted(s.execute(select(Artifact.kind).where(Artifact.run_id == runs[0]["run_id"])).scalars())
    assert kinds == ["nsys_report", "nsys_sqlite"]
    again = import_nsys([folder / "b.qdrep"], url=es_env)
    assert again[0]["run_id"] == runs[1]["run_id"] and again[0]["existing"]
    assert sum(1 for c in _calls(fake_nsys) if c[0] == "export") == 2  # deduplicated by hash, not converted again
