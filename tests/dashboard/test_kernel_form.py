"""New benchmark's profiler fields (``newbench_profile_kernels``, ``newbench_ncu_top``, ``newbench_nsys``): offered on
CUDA devices only, they reach the queued spec as ``kernel_iterations``, ``ncu_top`` and ``nsys``."""

from __future__ import annotations

from sqlalchemy import select

from tests.dashboard.conftest import Seeded, page


def test_profile_kernels_field_is_cuda_only_and_reaches_the_spec(seeded: Seeded) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("new_benchmark").run()
    assert all(n.key not in ("newbench_profile_kernels", "newbench_ncu_top") for n in at.number_input)  # CPU: not offered
    assert all(c.key != "newbench_nsys" for c in at.checkbox)
    at.radio(key="newbench_device_onnxruntime").set_value("cuda").run()
    at.number_input(key="newbench_profile_kernels").set_value(3).run()
    at.number_input(key="newbench_ncu_top").set_value(5).run()
    at.checkbox(key="newbench_nsys").check().run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.spec["device"] == "cuda:0" and job.spec["kernel_iterations"] == 3
    # ncu and nsys captures: the worker's machine checks that it has the tools (plan with devices_here=False)
    assert job.spec["ncu_top"] == 5 and job.spec["nsys"] is True
