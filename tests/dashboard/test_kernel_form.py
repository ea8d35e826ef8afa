"""New benchmark's kernel-timeline field (``newbench_profile_kernels``): offered on CUDA devices only, it reaches
the queued spec as ``kernel_iterations``."""

from __future__ import annotations

from sqlalchemy import select

from tests.dashboard.conftest import Seeded, page


def test_profile_kernels_field_is_cuda_only_and_reaches_the_spec(seeded: Seeded) -> None:
    from db.models import Job
    from db.session import session_scope

    at = page("new_benchmark").run()
    assert all(n.key != "newbench_profile_kernels" for n in at.number_input)  # CPU: not offered
    at.radio(key="newbench_device_onnxruntime").set_value("cuda").run()
    at.number_input(key="newbench_profile_kernels").set_value(3).run()
    at.button(key="newbench_submit").click().run()
    assert not at.exception, at.exception
    assert any("Queued job" in s.value for s in at.success), [e.value for e in at.error]
    with session_scope(seeded.url) as s:
        job = s.execute(select(Job).where(Job.status == "queued")).scalar_one()
    assert job.spec["device"] == "cuda:0" and job.spec["kernel_iterations"] == 3
