"""Fleet (issue 13) in the dashboard: runs measured on two Ray nodes side by side in one comparison, each
with the machine it ran on; the New benchmark form's "GPU type" field under ENGINESCOPE_EXECUTOR=ray.

The jobs' rows are written the way a Ray node writes them: the node's runner records
``jobs.worker_id = "ray:<node_id>@<ip>"`` and an ``info`` placement event (``db.jobs.set_placement``, the same
call as :func:`engine_runner.executors.ray_executor.run_job_on_node`) while the job runs. The real cluster's
version of this (a sweep spread over two local Ray nodes into PostgreSQL) is tests/integration/test_ray_fleet.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from tests.dashboard.conftest import Seeded, page, seed_results

NODE_A = "a1" * 28  # Ray node ids are 56 hex characters
NODE_B = "b2" * 28


def _as_ray_node(url: str, job_id: int, node_id: str, ip: str, gpu_type: str) -> None:
    """What a Ray node's runner writes about a job it runs (worker id + placement event), then its end."""
    from db import jobs as q
    from db.models import Job
    from db.session import session_scope

    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="running"))
    q.set_placement(job_id, f"ray:{node_id}@{ip}", f"running on Ray node {node_id[:12]} ({ip}), GPU(s) 0",
                    {"node_id": node_id, "node_ip": ip, "gpu_ids": ["0"], "accelerator_types": [gpu_type],
                     "gpu_memory_bytes": None, "cuda_visible_devices": "0", "requested": "1 GPU, 1 CPU"}, url=url)
    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))


@pytest.fixture
def two_nodes(seeded: Seeded) -> tuple[Seeded, int]:
    """The seeded job ran on node A (H100); a second job of the same model ran on node B (A10G)."""
    second = seed_results(seeded.url, seeded.model_id)
    _as_ray_node(seeded.url, seeded.job_id, NODE_A, "10.0.0.1", "H100")
    _as_ray_node(seeded.url, second.job_id, NODE_B, "10.0.0.2", "A10G")
    return seeded, second.job_id


MACHINE_A = f"10.0.0.1 (Ray node {NODE_A[:12]}, H100)"
MACHINE_B = f"10.0.0.2 (Ray node {NODE_B[:12]}, A10G)"


def test_run_rows_name_the_machine_of_each_run(two_nodes: tuple[Seeded, int]) -> None:
    from dashboard import data

    seeded, second = two_nodes
    rows = data.run_rows(seeded.url, model_id=seeded.model_id)
    by_job = {j: {r["machine"] for r in rows if r["job_id"] == j} for j in (seeded.job_id, second)}
    assert by_job == {seeded.job_id: {MACHINE_A}, second: {MACHINE_B}}
    assert {r["worker_id"] for r in rows} == {f"ray:{NODE_A}@10.0.0.1", f"ray:{NODE_B}@10.0.0.2"}


def test_machine_label_of_local_and_cli_jobs() -> None:
    from dashboard.data import machine_label

    assert machine_label("worker@gpu-box-3:4242") == "gpu-box-3"
    assert machine_label("cli@laptop:17") == "laptop"
    assert machine_label(None, None, {"host": "imported-from"}) == "imported-from"
    assert machine_label(None) is None
    assert machine_label(f"ray:{NODE_A}@10.0.0.9") == f"10.0.0.9 (Ray node {NODE_A[:12]})"


def test_compare_page_shows_runs_of_two_nodes_in_one_comparison(two_nodes: tuple[Seeded, int]) -> None:
    seeded, second = two_nodes
    at = page("compare").run()
    assert not at.exception, at.exception
    at.multiselect(key="compare_jobs").set_value([second, seeded.job_id]).run()
    assert not at.exception, at.exception
    table = next(e.value for e in at.dataframe if "p50 ms" in e.value.columns)
    # both jobs' succeeded runs (fp32, fp16, int8-dynamic each) are in the one table
    assert len(table) == 6, table
    assert set(table["machine"]) == {MACHINE_A, MACHINE_B}, table["machine"]


def test_gpu_type_field_lists_the_clusters_types_and_reaches_the_spec(seeded: Seeded,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.machines as machines
    from db.models import Job
    from db.session import session_scope

    monkeypatch.setenv("ENGINESCOPE_EXECUTOR", "ray")
    monkeypatch.setattr(machines, "cluster_accelerator_types", lambda **_: ["A10G", "H100"])
    at = page("new_benchmark").run()
    assert not at.exception, at.exception
    box = at.selectbox(key="newbench_gpu_type")
    assert box.options == ["any", "A10G", "H100"] and box.value == "any"
    box.set_value("H100").run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.spec["gpu_type"] == "H100"


def test_gpu_type_is_free_text_when_the_cluster_does_not_answer(seeded: Seeded,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.machines as machines
    from db.models import Job
    from db.session import session_scope

    monkeypatch.setenv("ENGINESCOPE_EXECUTOR", "ray")
    monkeypatch.setattr(machines, "cluster_accelerator_types", lambda **_: None)
    at = page("new_benchmark").run()
    at.text_input(key="newbench_gpu_type_text").input("H100; rm").run()
    at.button(key="newbench_submit").click().run()
    assert any("GPU type 'H100; rm' is not an accelerator type name" in e.value for e in at.error), \
        [e.value for e in at.error]
    at.text_input(key="newbench_gpu_type_text").input(" accelerator_type:A100-80G ").run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.spec["gpu_type"] == "A100-80G"


def test_no_gpu_type_field_for_the_local_worker(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINESCOPE_EXECUTOR", raising=False)
    at = page("new_benchmark").run()
    assert not at.exception, at.exception
    assert all(w.key not in ("newbench_gpu_type", "newbench_gpu_type_text") for w in [*at.selectbox, *at.text_input])
    at.button(key="newbench_submit").click().run()
    from db.models import Job
    from db.session import session_scope

    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert "gpu_type" not in job.spec


def test_cluster_lookup_waits_a_bounded_time_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """ray.init to an unreachable head blocks for minutes: the form and the Machines panel wait at most
    wait_s, never twice on the same hanging lookup, and reuse a recent answer."""
    import threading

    import dashboard.machines as machines

    monkeypatch.setattr(machines, "_nodes_state", {"thread": None, "nodes": None, "error": None, "at": 0.0})
    release = threading.Event()

    def hanging() -> list[dict]:
        release.wait(30)
        return [{"alive": True, "accelerator_types": ["L4"]}, {"alive": False, "accelerator_types": ["V100"]}]

    assert machines.cluster_accelerator_types(hanging, wait_s=0.2) is None  # the cluster does not answer in time
    with pytest.raises(TimeoutError, match="did not answer"):
        machines.cluster_nodes(hanging, wait_s=5)  # returns at once: no second wait on the hanging lookup
    release.set()
    machines._nodes_state["thread"].join(5)
    assert machines.cluster_accelerator_types(hanging, wait_s=0.2) == ["L4"]  # live nodes only, then cached

    def failing() -> list[dict]:
        raise RuntimeError("RAY_ADDRESS is not set")

    monkeypatch.setattr(machines, "_nodes_state", {"thread": None, "nodes": None, "error": None, "at": 0.0})
    with pytest.raises(RuntimeError, match="RAY_ADDRESS"):
        machines.cluster_nodes(failing, wait_s=5)
    assert machines.cluster_accelerator_types(failing, wait_s=5) is None


def test_ray_nodes_refuses_to_start_a_local_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    import dashboard.machines as machines

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **_: pytest.fail("ray.init called without an address"))
    with pytest.raises(RuntimeError, match="RAY_ADDRESS is not set"):
        machines.ray_nodes()
