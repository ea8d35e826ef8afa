"""The Ray executor: a dispatcher that claims jobs from the database and runs each as a Ray task.

:class:`RayDispatcher` (``enginescope worker --executor ray --ray-address ADDR``), every ``poll_interval_s``:

1. collects finished tasks (``ray.wait``) and writes their outcome: the task itself records the job's end
   through the same child code as the local worker; the dispatcher adds what only it can see: a node
   that died (``NodeDiedError``, a crashed Ray worker: "Ray node <id> (<ip>) died while the job ran"), a
   task cancelled before it started, a task that raised;
2. heartbeats every job it has in flight (pending ones included, so :func:`db.jobs.fail_stale` leaves a job
   that waits for a free GPU alone) and handles cancel requests: a task not started yet is removed with
   ``ray.cancel``; a running one is stopped by its node-side runner (SIGTERM to the child's process group,
   grace, SIGKILL), and if it is still there ``grace_s`` + 5 polls later ``ray.cancel(force=True)`` kills
   its Ray worker (the child, left without its parent, stops itself);
3. claims queued jobs (:func:`db.jobs.claim_next` with ``exclusive_devices=False``: Ray's ``num_gpus``, not
   the ``jobs.device`` column, keeps two benchmarks off one GPU) while fewer jobs are in flight than the
   cluster has GPUs (at least one), and submits each with :func:`engine_runner.executors.resources.job_resources`;
   a job that no node could ever run (an accelerator type absent from the cluster) fails at once, saying so.

On its node the task (:func:`run_job_on_node`) records where it runs (``jobs.worker_id =
"ray:<node_id>@<ip>"`` and an ``info`` event with the node id, IP, the GPU ids Ray assigned and the
accelerator type) and runs the job with a one-job :class:`engine_runner.worker.Worker`
(:meth:`~engine_runner.worker.Worker.run_claimed`): the same child, log format, heartbeats and cancel.
Ray sets ``CUDA_VISIBLE_DEVICES`` to the assigned GPUs, so ``cuda:0`` in a job means its first GPU.

Tasks are submitted with ``max_retries=0``: a benchmark is not silently re-run on another node.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import OperationalError

from db import jobs as q
from db.config import db_url
from db.models import TERMINAL_STATUSES, Job
from engine_runner.executors.resources import ResourceRequest, cluster_lacks, job_resources, normalize_gpu_type
from profiles.errors import EngineError, EngineScopeError

log = logging.getLogger("enginescope.ray")

#: Namespace of the dispatcher's Ray driver (and of the dashboard's read-only connection).
RAY_NAMESPACE = "enginescope"


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency
        raise EngineError(f"the Ray executor needs the `ray` package ({exc}); pip install ray") from None
    return ray


def connect(address: str | None) -> Any:
    """``ray.init(address=...)`` once per process (namespace ``enginescope``); returns the ``ray`` module.

    Raises:
        EngineError: no address, or no cluster answers there.
    """
    ray = _ray()
    if ray.is_initialized():
        return ray
    if not address:
        raise EngineError("the Ray executor needs a cluster address: --ray-address HOST:PORT or RAY_ADDRESS "
                          "(start the head with `ray start --head`)")
    try:
        ray.init(address=address, namespace=RAY_NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
        raise EngineError(f"could not connect to the Ray cluster at {address}: {type(exc).__name__}: {exc}") from None
    return ray


def node_accelerator_types(resources: dict[str, float]) -> list[str]:
    """Accelerator types of a node from its resources (``accelerator_type:H100`` -> ``H100``)."""
    return sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))


# ----------------------------------------------------------------------------------------------
# node side


def _gpu_memory_bytes(gpu_ids: list[str]) -> int | None:
    """Total memory of the first GPU Ray assigned (nvidia-ml-py), or None (no NVIDIA driver: a fake GPU)."""
    if not gpu_ids:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(int(gpu_ids[0]))).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, or an id that is not an index
        return None


def run_job_on_node(job_id: int, url: str, poll_interval_s: float, grace_s: float, requested: str) -> dict[str, Any]:
    """Body of the Ray task: run claimed job ``job_id`` on this node; return ``{"status", "node_id", ...}``."""
    ray = _ray()
    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    ip = ray.util.get_node_ip_address()
    types: list[str] = []
    try:
        node = next((n for n in ray.nodes() if n.get("NodeID") == node_id), None)
        types = node_accelerator_types((node or {}).get("Resources") or {})
    except Exception:  # noqa: BLE001 - the type is information only
        pass
    worker_id = f"ray:{node_id}@{ip}"
    mem = _gpu_memory_bytes(gpu_ids)
    where = {"gpu_memory_bytes": mem, "node_id": node_id, "node_ip": ip, "gpu_ids": gpu_ids, "accelerator_types": types,
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "requested": requested}
    q.set_placement(job_id, worker_id, f"running on Ray node {node_id[:12]} ({ip}), GPU(s) {','.join(gpu_ids) or 'none'}"
                    + (f", accelerator {'/'.join(types)}" if types else ""), where, url=url)
    job = q.get_job(job_id, url=url)
    if job is None or job.status != "running":
        return {"status": job.status if job else "missing", **where}
    from engine_runner.worker import Worker

    w = Worker(url, poll_interval_s=poll_interval_s, grace_s=grace_s, worker_id=worker_id,
               extra_env={"ENGINESCOPE_RAY_NODE_ID": node_id, "ENGINESCOPE_RAY_GPU_IDS": ",".join(gpu_ids)})
    status = w.run_claimed(job)
    try:  # a node-local log is out of the dashboard's reach: put it in a remote artifact store
        from db.artifact_store import store_job_log

        put = store_job_log(job_id, q.job_log_path(job_id), url=url)
        if put is not None:
            q.add_event(job_id, "info", f"log stored at {put.url}", {"log_url": put.url}, url=url)
    except Exception as exc:  # noqa: BLE001 - the job's outcome is recorded already
        q.add_event(job_id, "warning", f"could not store the job's log in ENGINESCOPE_ARTIFACTS: {exc}", url=url)
    return {"status": status, **where}


# ----------------------------------------------------------------------------------------------
# dispatcher side


@dataclass
class InFlight:
    """A job submitted to Ray: its task's ObjectRef, resources, and cancel bookkeeping (monotonic s)."""

    job_id: int
    ref: Any
    request: ResourceRequest
    submitted_mono_s: float
    cancel_seen_mono_s: float | None = None
    force_cancelled: bool = False


class RayDispatcher:
    """Claims queued jobs and runs each as a Ray task (see the module doc).

    Args:
        url: database URL (None = ``ENGINESCOPE_DB_URL``); every node must reach the same database.
        address: Ray cluster address (``--ray-address`` / ``RAY_ADDRESS``).
        gpu_type: accelerator type for jobs whose spec names none (None = any node).
        poll_interval_s, heartbeat_timeout_s, grace_s: as for :class:`engine_runner.worker.Worker`.
        max_in_flight: most jobs submitted at once (None = the cluster's GPU count, at least 1).
    """

    def __init__(self, url: str | None = None, address: str | None = None, *, gpu_type: str | None = None,
                 poll_interval_s: float = 1.0, heartbeat_timeout_s: float = 60.0, grace_s: float = 10.0,
                 max_in_flight: int | None = None, worker_id: str | None = None) -> None:
        self.url = url or db_url()
        self.address = address
        self.gpu_type = normalize_gpu_type(gpu_type)
        self.poll_interval_s = poll_interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.grace_s = grace_s
        self.max_in_flight = max_in_flight
        self.worker_id = worker_id or q.worker_identity("worker")
        self.inflight: dict[int, InFlight] = {}
        self._stop = threading.Event()
        self._stop_signal = "stop requested"
        self._last_stale_check_s = 0.0
        self._ray: Any = None
        self._remote: Any = None

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to end; jobs in flight are cancelled in Ray and failed "dispatcher stopped"."""
        self._stop_signal = reason
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT -> :meth:`stop` (call from the main thread)."""
        import signal

        def handler(signum: int, _frame: object) -> None:
            self.stop(f"dispatcher received {signal.Signals(signum).name}")
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, *, once: bool = False) -> int:
        """Loop until :meth:`stop` (with ``once``: until nothing is queued or in flight). Returns the number
        of jobs submitted."""
        self._ray = connect(self.address)
        self._remote = self._ray.remote(max_retries=0)(run_job_on_node)
        log.info("ray dispatcher %s on %s, cluster %s (gpu type %s)", self.worker_id, self.url, self.address,
                 self.gpu_type or "any")
        submitted = 0
        try:
            while not self._stop.is_set():
                try:
                    self._collect()
                    self._heartbeat_and_cancel()
                    submitted += self._claim_and_submit()
                    self._fail_stale()
                except OperationalError as exc:
                    log.warning("database error, retrying in %.2g s: %s", self.poll_interval_s, str(exc).splitlines()[0])
                else:
                    if once and not self.inflight and not self._queued():
                        break
                self._stop.wait(self.poll_interval_s)
        finally:
            self._shutdown()
        return submitted

    # -- steps -----------------------------------------------------------------------------------

    def _queued(self) -> bool:
        return any(j.status == "queued" for j in q.list_jobs(200, url=self.url))

    def capacity(self) -> int:
        """How many jobs may be in flight now."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        try:
            gpus = float(self._ray.cluster_resources().get("GPU", 0))
        except Exception:  # noqa: BLE001 - a GCS hiccup: keep what is in flight, submit one
            gpus = 0
        return max(1, int(gpus))

    def _claim_and_submit(self) -> int:
        n = 0
        while not self._stop.is_set() and len(self.inflight) < self.capacity():
            job = q.claim_next(self.worker_id, (), exclusive_devices=False, url=self.url)
            if job is None:
                break
            self._submit(job)
            n += 1
        return n

    def _submit(self, job: Job) -> None:
        try:
            req = job_resources(job.kind, dict(job.spec or {}), default_gpu_type=self.gpu_type)
            lack = cluster_lacks(req, dict(self._ray.cluster_resources()))
        except EngineScopeError as exc:
            q.finish_job(job.id, "failed", f"{type(exc).__name__}: {exc}", url=self.url)
            return
        if lack:
            q.finish_job(job.id, "failed", f"cannot place the job ({req.describe()}): {lack}", url=self.url)
            return
        ref = self._remote.options(num_gpus=req.num_gpus, num_cpus=req.num_cpus, resources=req.resources or None,
                                   name=f"enginescope-job-{job.id}").remote(
            job.id, self.url, self.poll_interval_s, self.grace_s, req.describe())
        self.inflight[job.id] = InFlight(job.id, ref, req, time.monotonic())
        q.add_event(job.id, "stage", f"submitted to Ray ({req.describe()}); waiting for a node",
                    {"num_gpus": req.num_gpus, "num_cpus": req.num_cpus, "resources": req.resources}, url=self.url)
        log.info("job %d (%s) submitted to Ray: %s", job.id, job.kind, req.describe())

    def _collect(self) -> None:
        if not self.inflight:
            return
        refs = [f.ref for f in self.inflight.values()]
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        ready_hex = {r.hex() for r in ready}
        for f in [f for f in self.inflight.values() if f.ref.hex() in ready_hex]:
            del self.inflight[f.job_id]
            self._record(f)

    def _record(self, f: InFlight) -> None:
        ray = self._ray
        exc_types = ray.exceptions
        try:
            result = ray.get(f.ref)
        except exc_types.TaskCancelledError:
            q.finish_job(f.job_id, "cancelled", "cancelled by the user" + (
                " (its Ray task was killed after the grace period)" if f.force_cancelled else " before it started"),
                url=self.url)
            return
        except (exc_types.NodeDiedError, exc_types.WorkerCrashedError, exc_types.ActorDiedError,
                exc_types.ObjectLostError, exc_types.OwnerDiedError) as exc:
            if f.force_cancelled:
                q.finish_job(f.job_id, "cancelled", "cancelled by the user (its Ray task was killed after the grace "
                             "period)", from_statuses=("running", "failed"), url=self.url)
                return
            job = q.get_job(f.job_id, url=self.url)
            where = (job.worker_id or "") if job else ""
            node = where[4:] if where.startswith("ray:") else "(not started on a node yet)"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            q.fail_or_amend(f.job_id, f"Ray node {node} died or lost the job's Ray worker while the job ran: "
                            f"{type(exc).__name__}: {first}", url=self.url)
            log.warning("job %d: node %s died (%s)", f.job_id, node, type(exc).__name__)
            return
        except Exception as exc:  # noqa: BLE001 - RayTaskError(...) from the runner itself
            lines = str(exc).strip().splitlines()
            q.finish_job(f.job_id, "failed", f"the Ray task of the job raised {type(exc).__name__}: "
                         + "\n".join(lines[-20:]), url=self.url)
            return
        job = q.get_job(f.job_id, url=self.url)
        if job is not None and job.status not in TERMINAL_STATUSES:  # pragma: no cover - the runner always ends it
            q.finish_job(f.job_id, "failed", f"the Ray task ended ({result.get('status')}) without recording a "
                         "result", url=self.url)
        log.info("job %d ended %s on node %s", f.job_id, job.status if job else "?", str(result.get("node_id"))[:12])

    def _heartbeat_and_cancel(self) -> None:
        if not self.inflight:
            return
        cancel_ids = q.heartbeat(list(self.inflight), url=self.url)
        now = time.monotonic()
        for job_id in cancel_ids:
            f = self.inflight.get(job_id)
            if f is None:
                continue
            if f.cancel_seen_mono_s is None:
                f.cancel_seen_mono_s = now
                job = q.get_job(job_id, url=self.url)
                if job is not None and not (job.worker_id or "").startswith("ray:"):
                    log.info("job %d: cancel before it reached a node: ray.cancel", job_id)
                    self._ray.cancel(f.ref)
            elif not f.force_cancelled and now - f.cancel_seen_mono_s > self.grace_s + 5 * self.poll_interval_s:
                log.warning("job %d: still running %g s after its cancel; ray.cancel(force=True)", job_id,
                            now - f.cancel_seen_mono_s)
                f.force_cancelled = True
                self._ray.cancel(f.ref, force=True)

    def _fail_stale(self) -> None:
        now = time.monotonic()
        if now - self._last_stale_check_s < max(self.poll_interval_s, self.heartbeat_timeout_s / 4):
            return
        self._last_stale_check_s = now
        for job_id in q.fail_stale(self.heartbeat_timeout_s, url=self.url):
            log.warning("failed stale job %d (its worker or node stopped heartbeating)", job_id)

    def _shutdown(self) -> None:
        if not self.inflight or self._ray is None:
            return
        log.info("stopping %d job(s) in flight: %s", len(self.inflight), sorted(self.inflight))
        for f in self.inflight.values():
            try:
                self._ray.cancel(f.ref, force=True)
            except Exception:  # noqa: BLE001 - best effort
                pass
            q.finish_job(f.job_id, "failed", f"Ray dispatcher stopped ({self._stop_signal}) while the job ran",
                         from_statuses=("queued", "running"), url=self.url)
        self.inflight.clear()
