"""The Ray executor on a real local Ray cluster with results in a real PostgreSQL server.

The test starts a Ray head (1 fake GPU, ``accelerator_type:H100``) and a second node process (1 fake GPU,
``accelerator_type:A10G``) on this machine (``ray start --block`` in their own process groups, free ports,
their own ``--temp-dir``; torn down by killing only those groups), and a throwaway PostgreSQL cluster (the
fixture of test_postgres.py). Ray's ``num_gpus`` is a counted resource: no CUDA is needed; the jobs run ONNX
Runtime on CPU on whichever node Ray gives them a "GPU" of. Both nodes share one ENGINESCOPE_HOME, as a team's
nodes share an NFS folder. Waits are bounded; nothing asserts a duration.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from test_postgres import pg_server_url  # noqa: F401 - the module-scoped PostgreSQL server fixture

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ray = pytest.importorskip("ray", reason="ray (a dependency of EngineScope) is not installed")

FAST = {"iterations": 20, "min_duration_s": 0, "warmup_iterations": 2, "warmup_s": 0, "profile_layers": False}
BIN = Path(sys.executable).parent


def wait_for(pred: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_args() -> list[str]:
    return ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--block",
            "--node-ip-address=127.0.0.1", f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]


class Cluster:
    def __init__(self, address: str, head: subprocess.Popen[bytes], worker: subprocess.Popen[bytes], tmp: Path,
                 home: Path) -> None:
        self.address, self.head, self.worker, self.tmp, self.home = address, head, worker, tmp, home
        self.node_of: dict[str, str] = {}

    def kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)


@pytest.fixture(scope="module")
def pg_url(pg_server_url: str) -> Iterator[str]:  # noqa: F811
    from db.session import get_engine, migrate

    schema = f"es_fleet_{uuid.uuid4().hex[:10]}"
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


@pytest.fixture(scope="module")
def cluster(pg_url: str) -> Iterator[Cluster]:
    """Head (H100) + one more node (A10G), each with one fake GPU; the driver connected to it."""
    tmp = Path(tempfile.mkdtemp(prefix="esray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    home = tmp / "home"
    home.mkdir()
    # RAY_memory_monitor_refresh_ms=0: Ray's own OOM killer acts on the whole machine's memory (95% by default)
    # and killed a job's Ray worker here while other processes filled the machine; these jobs are tiny, and a
    # kill it makes is not the dead node this module tests.
    env = dict(os.environ, ENGINESCOPE_HOME=str(home), ENGINESCOPE_DB_URL=pg_url, RAY_USAGE_STATS_ENABLED="0",
               RAY_memory_monitor_refresh_ms="0")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
                             f"--temp-dir={tmp / 'ray'}", "--num-gpus=1", '--resources={"accelerator_type:H100": 1}',
                             *_node_args()], env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=open(tmp / "head.log", "wb"), stderr=subprocess.STDOUT)
    worker: subprocess.Popen[bytes] | None = None
    try:
        def head_up() -> bool:
            assert head.poll() is None, (tmp / "head.log").read_text(errors="replace")
            return subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], env=env,
                                  capture_output=True, timeout=60).returncode == 0
        wait_for(head_up, 120, "the Ray head")
        worker = subprocess.Popen([str(BIN / "ray"), "start", f"--address={address}", f"--temp-dir={tmp / 'ray'}",
                                   "--num-gpus=1", '--resources={"accelerator_type:A10G": 1}', *_node_args()],
                                  env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                  stdout=open(tmp / "worker.log", "wb"), stderr=subprocess.STDOUT)
        from engine_runner.executors.ray_executor import connect

        connect(address)
        wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 120, "two live Ray nodes")
        c = Cluster(address, head, worker, tmp, home)
        for n in ray.nodes():
            for k in n["Resources"]:
                if k.startswith("accelerator_type:"):
                    c.node_of[k.split(":", 1)[1]] = n["NodeID"]
        assert set(c.node_of) == {"H100", "A10G"}
        yield c
    finally:
        try:
            ray.shutdown()
        finally:
            for p in (worker, head):
                if p is not None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait(30)
            _kill_leftovers(tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _kill_leftovers(tmp: Path) -> None:
    """Ray workers lead their own process groups: kill the processes whose command line names our temp dir
    or whose parent was one of our nodes (only ours: matched by that path)."""
    import psutil

    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(tmp) in a for a in (p.info["cmdline"] or [])):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@pytest.fixture
def fleet(cluster: Cluster, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A clean queue, a tiny registered ONNX model and a dispatcher looping in a thread."""
    from db.session import session_scope
    from db.store import add_model
    from engine_runner.executors.ray_executor import RayDispatcher
    from tests.dashboard.conftest import make_mlp_onnx

    monkeypatch.setenv("ENGINESCOPE_HOME", str(cluster.home))
    monkeypatch.setenv("ENGINESCOPE_DB_URL", pg_url)
    with session_scope(pg_url) as s:
        s.execute(text("TRUNCATE jobs, models, runs RESTART IDENTITY CASCADE"))
    model = add_model(make_mlp_onnx(tmp_path / "mlp.onnx"), url=pg_url)
    d = RayDispatcher(pg_url, cluster.address, poll_interval_s=0.2, heartbeat_timeout_s=120, grace_s=3)
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    yield {"url": pg_url, "model_id": int(model.id), "dispatcher": d, "cluster": cluster}
    d.stop()
    t.join(60)
    assert not t.is_alive(), "dispatcher thread did not stop"


def submit(f: dict, **extra: object) -> int:
    from db.jobs import submit_job

    spec = {"model_id": f["model_id"], "engine": "onnxruntime", "device": "cpu", "precisions": ["fp32"],
            "batch_sizes": [1], **FAST, **extra}
    return submit_job("model_bench", spec, model_id=f["model_id"], url=f["url"])


def job(f: dict, job_id: int):  # noqa: ANN201
    from db.jobs import get_job

    j = get_job(job_id, url=f["url"])
    assert j is not None
    return j


def ended(f: dict, ids: list[int]) -> bool:
    from db.models import TERMINAL_STATUSES

    return all(job(f, i).status in TERMINAL_STATUSES for i in ids)


def placement(f: dict, job_id: int) -> dict:
    from db.jobs import job_events

    evs = [e for e in job_events(job_id, url=f["url"]) if e.kind == "info" and "node_id" in (e.data or {})]
    return {**evs[0].data, "ts": evs[0].ts} if evs else {}


def node_of_job(f: dict, job_id: int) -> str:
    wid = job(f, job_id).worker_id or ""
    assert wid.startswith("ray:"), wid
    return wid[4:].split("@")[0]


# ---------------------------------------------------------------------------------------------- tests

def test_sweep_spreads_over_both_nodes_one_job_per_gpu(fleet: dict) -> None:
    from db.jobs import as_utc
    from db.models import Run
    from db.session import session_scope

    ids = [submit(fleet, batch_sizes=[b]) for b in (1, 2, 3, 4)]
    wait_for(lambda: ended(fleet, ids), 240, "the sweep to end")
    for i in ids:
        assert job(fleet, i).status == "succeeded", job(fleet, i).error
    nodes = {i: node_of_job(fleet, i) for i in ids}
    assert set(nodes.values()) == set(fleet["cluster"].node_of.values()), nodes  # both nodes took jobs
    for i in ids:  # where it ran is recorded with the GPU Ray assigned and the node's accelerator type
        p = placement(fleet, i)
        assert p["node_id"] == nodes[i] and p["gpu_ids"] == ["0"]
        assert p["accelerator_types"] == [t for t, n in fleet["cluster"].node_of.items() if n == nodes[i]]
    # no GPU shared: on each node the jobs' spans (placed on the node .. finished) never overlap
    spans: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for i in ids:
        start, end = as_utc(placement(fleet, i)["ts"]), as_utc(job(fleet, i).finished_at)
        assert start is not None and end is not None
        spans.setdefault(nodes[i], []).append((start, end))
    for node, ss in spans.items():
        ss.sort()
        for (_, end_a), (start_b, _) in zip(ss, ss[1:]):
            assert end_a <= start_b, f"two jobs overlapped on node {node}: {ss}"
    with session_scope(fleet["url"]) as s:
        runs = s.execute(select(Run).where(Run.job_id.in_(ids))).scalars().all()
    assert sorted(r.batch_size or 0 for r in runs) == [1, 2, 3, 4]
    assert all(r.status == "succeeded" and r.config["providers"] == ["CPUExecutionProvider"] for r in runs)
    # the dashboard's run reader (Compare) names each run's machine: both nodes, with their GPU types
    from dashboard.data import run_rows

    machines = {r["machine"] for r in run_rows(fleet["url"], job_ids=ids)}
    ip = {nodes[i]: placement(fleet, i)["node_ip"] for i in ids}
    assert machines == {f"{ip[n]} (Ray node {n[:12]}, {t})" for t, n in fleet["cluster"].node_of.items()}, machines
    # the log file format of the local worker, claimed by the Ray runner of that node
    log = Path(job(fleet, ids[0]).log_path).read_text()
    assert f"=== job {ids[0]} (model_bench) on cpu, claimed by ray:{nodes[ids[0]]}" in log and "job succeeded" in log


def test_pinned_accelerator_type_lands_only_on_that_node(fleet: dict) -> None:
    pinned = [submit(fleet, gpu_type="A10G"), submit(fleet, gpu_type="A10G"), submit(fleet, gpu_type="H100")]
    absent = submit(fleet, gpu_type="V100")
    wait_for(lambda: ended(fleet, [*pinned, absent]), 240, "the pinned jobs to end")
    c = fleet["cluster"]
    for i in pinned:
        assert job(fleet, i).status == "succeeded", job(fleet, i).error
    assert [node_of_job(fleet, i) for i in pinned] == [c.node_of["A10G"], c.node_of["A10G"], c.node_of["H100"]]
    j = job(fleet, absent)
    assert j.status == "failed" and "accelerator type V100" in j.error and "A10G" in j.error, j.error


def test_cancel_stops_the_job_on_its_node(fleet: dict) -> None:
    from db.jobs import request_cancel

    long_id = submit(fleet, iterations=10_000_000, min_duration_s=600, max_duration_s=900)
    wait_for(lambda: job(fleet, long_id).pid and placement(fleet, long_id), 120, "the job to start on a node")
    pid = job(fleet, long_id).pid
    assert request_cancel(long_id, url=fleet["url"])
    wait_for(lambda: ended(fleet, [long_id]), 90, "the cancel")
    j = job(fleet, long_id)
    assert j.status == "cancelled", j.error
    wait_for(lambda: not _alive(pid), 30, "the child's process group to be gone")


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_node_killed_mid_job_fails_that_job_only(fleet: dict) -> None:
    """Last test of the module: it kills the A10G node."""
    c = fleet["cluster"]
    doomed = submit(fleet, gpu_type="A10G", iterations=10_000_000, min_duration_s=600, max_duration_s=900)
    wait_for(lambda: job(fleet, doomed).pid and placement(fleet, doomed), 120, "the job to start on the A10G node")
    others = [submit(fleet, gpu_type="H100"), submit(fleet)]
    c.kill_group(c.worker)  # the node's raylet and its helpers (its own process group)
    wait_for(lambda: ended(fleet, [doomed, *others]), 240, "the jobs to end after the node died")
    j = job(fleet, doomed)
    assert j.status == "failed", j.error
    assert f"Ray node {c.node_of['A10G']}" in j.error and "died" in j.error, j.error
    for i in others:
        assert job(fleet, i).status == "succeeded", job(fleet, i).error
        assert node_of_job(fleet, i) == c.node_of["H100"]


def test_db_copy_sqlite_into_the_team_postgresql_twice(pg_url: str, es_env: str, tmp_path: Path) -> None:
    """An engineer's local SQLite results into the team's PostgreSQL (this module's server, a fresh schema
    of its own): the first copy adds every ended row with ids remapped, the second adds nothing."""
    from db.session import session_scope
    from tests.unit.test_db_copy import check_copy, seed

    schema_url = _fresh_schema(pg_url)
    seeded = seed(es_env, tmp_path)
    check_copy(es_env, schema_url, seeded)
    with session_scope(schema_url) as s:  # the target's sequences moved on: a new job gets a fresh id
        assert s.execute(text("SELECT max(id) FROM jobs")).scalar_one() == 1


def _fresh_schema(pg_url: str) -> str:
    base, _, _ = pg_url.partition("?")
    schema = f"es_copy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return f"{base}?options=-csearch_path%3D{schema}"
