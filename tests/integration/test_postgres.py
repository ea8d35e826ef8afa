"""The same migrations and the same job queue on PostgreSQL.

Database: ``$ENGINESCOPE_TEST_PG_URL`` when set (a throwaway schema is created in it and dropped
afterwards); else, when PostgreSQL server binaries exist (``/usr/lib/postgresql/*/bin/initdb``), a
throwaway cluster in a temp dir on a free port (run as the ``postgres`` user via ``runuser`` when
root, since initdb refuses root), torn down at the end; else the module skips. ``run_tests.sh``
installs Debian's ``postgresql`` (scripts/bootstrap.sh ``es_setup_postgres``) so CI runs it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text, update

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing: initdb refuses to run as root")
        return [runuser, "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="module")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server URL (see module doc); skips when none is available."""
    pytest.importorskip("psycopg2", reason="psycopg2 (the PostgreSQL driver, test extra) is not installed")
    env_url = os.environ.get("ENGINESCOPE_TEST_PG_URL")
    if env_url:
        yield env_url
        return
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs:
        pytest.skip("no PostgreSQL server available (set ENGINESCOPE_TEST_PG_URL or apt-get install postgresql)")
    bindir = Path(initdbs[-1]).parent
    tmp = Path(tempfile.mkdtemp(prefix="es-pg-"))
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    data, port = tmp / "data", _free_port()
    try:
        subprocess.run(_as_postgres_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                          "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "server.log"), "-w",
                                          "-t", "60", "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off",
                                          "start"]), check=True, capture_output=True, timeout=90)
    except subprocess.CalledProcessError as exc:
        log = (tmp / "server.log").read_text(errors="replace") if (tmp / "server.log").exists() else ""
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssertionError(f"could not start a throwaway PostgreSQL cluster: {exc.stderr!r}\n{log}") from None
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh schema in the server, migrated to head; the URL selects it through ``search_path``."""
    from db.session import get_engine, migrate

    schema = f"es_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_server_url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_server_url else "?"
    url = f"{pg_server_url}{sep}options=-csearch_path%3D{schema}"
    migrate(url)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        get_engine.cache_clear()
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def clean(pg_url: str) -> str:
    from db.session import session_scope

    with session_scope(pg_url) as s:
        s.execute(text("TRUNCATE jobs RESTART IDENTITY CASCADE"))
    return pg_url


def test_migrations_create_every_table(pg_url: str) -> None:
    from db.models import Base

    eng = create_engine(pg_url)
    try:
        with eng.connect() as c:
            assert c.execute(text("SELECT current_schema()")).scalar_one().startswith("es_test_")
            rev = c.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        tables = set(inspect(eng).get_table_names())
    finally:
        eng.dispose()
    assert set(Base.metadata.tables) <= tables
    assert rev


def test_claim_is_atomic_and_serialises_devices(clean: str) -> None:
    from db import jobs as q

    cpu = [q.submit_job("clock_check", {"n": i}, url=clean) for i in range(3)]
    gpu = q.submit_job("clock_check", {}, device="cuda:0", url=clean)
    barrier = threading.Barrier(8)
    won: list[int] = []
    errors: list[BaseException] = []

    def claimer(i: int) -> None:
        try:
            barrier.wait()
            j = q.claim_next(f"worker@pg-test:{i}", (), url=clean)
            if j is not None:
                won.append(j.id)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    ts = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert sorted(won) == [cpu[0], gpu]  # one job per device, the oldest cpu job, never twice
    j = q.get_job(cpu[0], url=clean)
    assert j.status == "running" and j.log_path.endswith(f"job-{cpu[0]}.log") and j.spec == {"n": 0}
    assert q.claim_next("worker@pg-test:9", (), url=clean) is None
    q.finish_job(cpu[0], "succeeded", None, url=clean)
    assert q.claim_next("worker@pg-test:9", {"cuda:0"}, url=clean).id == cpu[1]


def test_cancel_inline_and_stale_on_postgres(clean: str) -> None:
    import datetime as dt

    from db import jobs as q
    from db.models import Job, utcnow
    from db.session import session_scope
    from profiles.errors import EngineError

    a = q.submit_job("clock_check", {}, url=clean)
    assert q.request_cancel(a, url=clean) and q.get_job(a, url=clean).status == "cancelled"
    inline = q.start_inline_job("model_bench", {"x": [1, 2]}, url=clean)
    with pytest.raises(EngineError, match="busy"):
        q.start_inline_job("model_bench", {}, url=clean)
    b = q.submit_job("clock_check", {}, device="cuda:0", url=clean)
    assert q.claim_next("worker@elsewhere:1", (), url=clean).id == b
    with session_scope(clean) as s:
        s.execute(update(Job).where(Job.id == b).values(heartbeat_at=utcnow() - dt.timedelta(seconds=120)))
    assert q.fail_stale(60, url=clean) == [b]
    assert re.search(r"no heartbeat for 1\d\d s", q.get_job(b, url=clean).error)
    assert q.get_job(inline, url=clean).status == "running"  # its process (this one) is alive
    with session_scope(clean) as s:
        assert s.execute(select(Job.id).where(Job.status == "running")).scalars().all() == [inline]


def test_worker_runs_a_real_job_against_postgres(clean: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from db import jobs as q
    from engine_runner.worker import Worker

    monkeypatch.setenv("ENGINESCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ENGINESCOPE_DB_URL", clean)
    job_id = q.submit_job("clock_check", {"duration_s": 0.2, "samples": 500}, url=clean)
    Worker(clean, poll_interval_s=0.1).run(once=True)
    job = q.get_job(job_id, url=clean)
    assert job.status == "succeeded", job.error
    assert any(e.kind == "progress" for e in q.job_events(job_id, url=clean))
    assert Path(job.log_path).is_file()
