"""The Machines panel (dashboard/machines.py) with a fake Ray nodes source, and the local device list."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest

NODES = [
    {"node_id": "a" * 56, "ip": "10.0.0.1", "alive": True, "gpus": 8, "cpus": 64, "accelerator_types": ["H100"]},
    {"node_id": "b" * 56, "ip": "10.0.0.2", "alive": True, "gpus": 1, "cpus": 8, "accelerator_types": ["A10G"]},
    {"node_id": "c" * 56, "ip": "10.0.0.3", "alive": False, "gpus": 1, "cpus": 8, "accelerator_types": ["A10G"]},
]


def _panel(url: str, nodes: list) -> None:  # AppTest runs this function's source alone: no annotations from here
    from dashboard.machines import render_machines

    render_machines(url, source=lambda: nodes)


def _running_on(node_id: str, kind: str = "model_bench", spec: dict[str, Any] | None = None, mem: int | None = None) -> int:
    from db import jobs as q

    j = q.submit_job(kind, spec or {})
    q.claim_next("worker@t:1", exclusive_devices=False)
    q.set_placement(j, f"ray:{node_id}@10.0.0.9", "running on a node", {"node_id": node_id, "gpu_memory_bytes": mem})
    return j


def test_ray_nodes_with_their_jobs_and_free_gpus(es_env: str) -> None:
    from dashboard.machines import node_rows

    a = _running_on("a" * 56, mem=80 * 2**30)
    b = _running_on("a" * 56, "llm_serve", {"tensor_parallel_size": 4})
    rows = {r["node"]: r for r in node_rows(NODES)}
    h100 = rows["a" * 12]
    assert h100["gpu type"] == "H100" and h100["busy"] == 5 and h100["free"] == 3 and h100["gpu memory"] == "80 GiB"
    assert h100["jobs"] == f"#{a} model_bench, #{b} llm_serve"
    assert rows["b" * 12]["busy"] == 0 and rows["b" * 12]["free"] == 1 and rows["b" * 12]["jobs"] == "-"
    assert rows["c" * 12]["alive"] is False and rows["c" * 12]["free"] == 0


def test_panel_renders_the_cluster(es_env: str) -> None:
    _running_on("b" * 56)
    at = AppTest.from_function(_panel, args=(es_env, NODES), default_timeout=30).run()
    assert not at.exception, at.exception
    assert any("2 live node(s) of 3" in c.value and "8 free GPU(s) of 9" in c.value for c in at.caption)
    df = at.dataframe[0].value
    assert list(df["gpu type"]) == ["H100", "A10G", "A10G"] and list(df["busy"]) == [0, 1, 0]


def test_panel_reports_an_unreachable_cluster(es_env: str) -> None:
    def page(url: str) -> None:
        from dashboard.machines import render_machines

        def broken() -> list:
            raise ConnectionError("no GCS at 10.0.0.1:6379")

        render_machines(url, source=broken)

    at = AppTest.from_function(page, args=(es_env,), default_timeout=30).run()
    assert not at.exception and "no GCS at 10.0.0.1:6379" in at.error[0].value


def test_local_executor_lists_this_machines_devices(es_env: str, monkeypatch) -> None:  # noqa: ANN001
    from dashboard import machines
    from db import jobs as q

    monkeypatch.setattr(machines, "local_devices", lambda: [
        {"device": "cuda:0", "type": "NVIDIA H200", "memory": "140 GiB"}, {"device": "cpu", "type": "2 cores", "memory": "-"}])
    j = q.submit_job("clock_check", {}, device="cuda:0")
    q.claim_next("worker@t:1")
    rows = machines.local_rows(machines.local_devices())
    assert [(r["device"], r["busy"], r["jobs"]) for r in rows] == [("cuda:0", True, f"#{j} clock_check"), ("cpu", False, "-")]
    assert machines.local_devices is not None
