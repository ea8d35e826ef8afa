"""Executors: where claimed jobs run.

- ``local`` (default): :class:`engine_runner.worker.Worker`, one child process per job on this machine,
  one job per device.
- ``ray``: :class:`engine_runner.executors.ray_executor.RayDispatcher` claims jobs from the database and
  submits each as a Ray task that asks for the resources of :func:`engine_runner.executors.resources.job_resources`
  (``num_gpus`` and an ``accelerator_type:<T>`` resource); on its node the task runs the same child
  (``python -m engine_runner.child``) in its own process group through a one-job ``Worker``.

Pick one with ``ENGINESCOPE_EXECUTOR`` (``local`` | ``ray``) or ``enginescope worker --executor``; the Ray
address comes from ``--ray-address`` or ``RAY_ADDRESS``.
"""

from __future__ import annotations

import os

from profiles.errors import InputError

EXECUTORS = ("local", "ray")


def executor_name(value: str | None = None) -> str:
    """The executor to use: ``value``, else ``ENGINESCOPE_EXECUTOR``, else ``"local"``.

    Raises:
        InputError: not one of :data:`EXECUTORS`.
    """
    name = (value or os.environ.get("ENGINESCOPE_EXECUTOR") or "local").strip().lower()
    if name not in EXECUTORS:
        raise InputError(f"executor {name!r} (--executor / ENGINESCOPE_EXECUTOR) is not one of {', '.join(EXECUTORS)}")
    return name


def ray_address(value: str | None = None) -> str | None:
    """The Ray cluster address: ``value`` (``--ray-address``), else ``RAY_ADDRESS``, else None."""
    return value or os.environ.get("RAY_ADDRESS") or None
