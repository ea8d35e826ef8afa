"""What each job asks Ray for (engine_runner.executors.resources) and the executor choice."""

from __future__ import annotations

import pytest

from engine_runner.executors import executor_name, ray_address
from engine_runner.executors.resources import ResourceRequest, cluster_lacks, job_resources, normalize_gpu_type
from profiles.errors import InputError


def test_a_benchmark_takes_one_whole_gpu_and_an_export_none() -> None:
    assert job_resources("model_bench", {"model_id": 1}) == ResourceRequest(1, 1.0, {})
    assert job_resources("clock_check", {}).num_gpus == 1
    assert job_resources("export", {"source": "x"}) == ResourceRequest(0, 1.0, {})


def test_tensor_parallel_vllm_takes_n_gpus() -> None:
    assert job_resources("llm_serve", {"tensor_parallel_size": 4}).num_gpus == 4
    assert job_resources("llm_serve", {}).num_gpus == 1
    with pytest.raises(InputError, match="tensor_parallel_size"):
        job_resources("llm_serve", {"tensor_parallel_size": 0})


def test_gpu_type_from_spec_wins_over_the_dispatcher_default() -> None:
    r = job_resources("model_bench", {"gpu_type": "H100"}, default_gpu_type="A10G")
    assert r.resources == {"accelerator_type:H100": 0.001} and r.accelerator_type == "H100"
    assert job_resources("model_bench", {}, default_gpu_type="A10G").resources == {"accelerator_type:A10G": 0.001}
    assert job_resources("model_bench", {"gpu_type": ""}).resources == {}
    assert "1 GPU of type H100" in r.describe()


def test_gpu_type_names_are_checked() -> None:
    assert normalize_gpu_type(" A100-80G ") == "A100-80G"
    assert normalize_gpu_type("accelerator_type:L4") == "L4"
    assert normalize_gpu_type(None) is None
    with pytest.raises(InputError, match="--gpu-type"):
        normalize_gpu_type("H100; rm -rf")


def test_cluster_lacks_names_the_missing_type_and_the_types_present() -> None:
    cluster = {"GPU": 2.0, "CPU": 4.0, "accelerator_type:H100": 1.0, "accelerator_type:A10G": 1.0}
    assert cluster_lacks(job_resources("model_bench", {"gpu_type": "H100"}), cluster) is None
    why = cluster_lacks(job_resources("model_bench", {"gpu_type": "V100"}), cluster)
    assert why and "V100" in why and "A10G, H100" in why
    why = cluster_lacks(job_resources("llm_serve", {"tensor_parallel_size": 8}), cluster)
    assert why and "needs 8" in why
    assert cluster_lacks(job_resources("export", {}), {}) is None


def test_executor_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINESCOPE_EXECUTOR", raising=False)
    assert executor_name() == "local"
    monkeypatch.setenv("ENGINESCOPE_EXECUTOR", "Ray")
    assert executor_name() == "ray" and executor_name("local") == "local"
    with pytest.raises(InputError, match="ENGINESCOPE_EXECUTOR"):
        executor_name("slurm")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address() == "10.0.0.1:6379" and ray_address("h:1") == "h:1"


def test_claim_without_device_exclusivity(es_env: str) -> None:
    """The Ray dispatcher claims jobs on the same device name: Ray's num_gpus separates them."""
    from db import jobs as q

    a = q.submit_job("clock_check", {})
    b = q.submit_job("clock_check", {})
    first = q.claim_next("worker@t:1")
    assert first is not None and first.id == a
    assert q.claim_next("worker@t:1") is None  # the local rule: "cpu" is busy
    second = q.claim_next("worker@t:2", exclusive_devices=False)
    assert second is not None and second.id == b


def test_fail_or_amend_puts_the_node_reason_first(es_env: str) -> None:
    from db import jobs as q

    j = q.submit_job("clock_check", {})
    q.claim_next("worker@t:1")
    q.finish_job(j, "failed", "the worker that ran this job exited; the job was stopped")
    assert q.fail_or_amend(j, "Ray node abc died")
    failed = q.get_job(j)
    assert failed is not None and (failed.error or "").startswith("Ray node abc died\nthe worker that ran")
    assert not q.fail_or_amend(j, "Ray node abc died")  # once
    ok = q.submit_job("clock_check", {})
    q.claim_next("worker@t:1")
    q.finish_job(ok, "succeeded", None)
    assert not q.fail_or_amend(ok, "Ray node abc died")
    done = q.get_job(ok)
    assert done is not None and done.status == "succeeded"


def test_pool_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from db.config import db_max_overflow, db_pool_size
    from db.session import make_engine

    monkeypatch.setenv("ENGINESCOPE_DB_POOL_SIZE", "12")
    monkeypatch.delenv("ENGINESCOPE_DB_MAX_OVERFLOW", raising=False)
    assert db_pool_size() == 12 and db_max_overflow() == 24
    monkeypatch.setenv("ENGINESCOPE_DB_MAX_OVERFLOW", "3")
    pytest.importorskip("psycopg2")
    eng = make_engine("postgresql+psycopg2://u@127.0.0.1:1/x")  # no connection is made
    assert eng.pool.size() == 12 and eng.pool._max_overflow == 3  # type: ignore[attr-defined]
    monkeypatch.setenv("ENGINESCOPE_DB_POOL_SIZE", "0")
    with pytest.raises(InputError, match="ENGINESCOPE_DB_POOL_SIZE"):
        db_pool_size()
