"""The Machines panel: where jobs can run, what each GPU is doing.

- Executor ``ray`` (``ENGINESCOPE_EXECUTOR=ray``, cluster at ``RAY_ADDRESS``): the cluster's nodes from
  ``ray.nodes()`` (alive, IP, GPU count, accelerator type from the ``accelerator_type:<T>`` resource), the
  GPU memory a node's runner reported (nvidia-ml-py, in the job's placement event; "-" for a node that has
  not run a job or has no NVIDIA GPU) and, from the database, the running jobs on each node
  (``jobs.worker_id = "ray:<node_id>@<ip>"``) and so its busy / free GPUs.
- Otherwise (the local worker): this machine, its GPUs from ``nvidia-smi`` and the CPU, each busy when a
  running job holds that device (``jobs.device``).

A "nodes source" is a function returning node dicts ``{"node_id", "ip", "alive", "gpus", "accelerator_types",
"cpus"}``; tests pass a fake one to :func:`render_machines`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import select

from db.models import Job, JobEvent
from db.session import session_scope

NodesSource = Callable[[], list[dict[str, Any]]]


def ray_nodes(address: str | None = None) -> list[dict[str, Any]]:
    """The nodes of the Ray cluster at ``address`` (``RAY_ADDRESS``), via a read-only driver connection."""
    import ray

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:  # ray.init(address=None) would start a new local cluster inside the dashboard
            raise RuntimeError("RAY_ADDRESS is not set: the dashboard needs the Ray head's address (docs/fleet.md)")
        ray.init(address=address, namespace="enginescope", log_to_driver=False, logging_level=logging.WARNING)
    out = []
    for n in ray.nodes():
        res = n.get("Resources") or {}
        out.append({"node_id": n.get("NodeID", ""), "ip": n.get("NodeManagerAddress", ""), "alive": bool(n.get("Alive")),
                    "gpus": int(res.get("GPU", 0)), "cpus": int(res.get("CPU", 0)),
                    "accelerator_types": sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))})
    return out


_nodes_lock = threading.Lock()
_nodes_state: dict[str, Any] = {"thread": None, "nodes": None, "error": None, "at": 0.0}


def cluster_nodes(source: NodesSource | None = None, *, wait_s: float = 3.0,
                  max_age_s: float = 5.0) -> list[dict[str, Any]]:
    """The Ray cluster's nodes (:func:`ray_nodes`, or ``source``), waiting at most ``wait_s``.

    ``ray.init`` to an unreachable address blocks for minutes, so the lookup runs in a daemon thread, one at a
    time per process; an answer younger than ``max_age_s`` is reused, and while a lookup hangs the last answer
    (if any) is returned without waiting again.

    Raises:
        TimeoutError: no answer yet (the cluster did not answer within ``wait_s``).
        Exception: what the last lookup raised (e.g. RAY_ADDRESS unset), when there is no answer to return.
    """
    def lookup() -> None:
        try:
            nodes, error = (source or ray_nodes)(), None
        except Exception as exc:  # noqa: BLE001 - given to the caller
            nodes, error = None, exc
        with _nodes_lock:
            _nodes_state.update(error=error, at=time.monotonic())
            if nodes is not None:
                _nodes_state["nodes"] = nodes

    with _nodes_lock:
        if _nodes_state["nodes"] is not None and time.monotonic() - _nodes_state["at"] < max_age_s:
            return list(_nodes_state["nodes"])
        t = _nodes_state["thread"]
        started = t is None or not t.is_alive()
        if started:
            t = threading.Thread(target=lookup, name="enginescope-ray-nodes", daemon=True)
            _nodes_state.update(thread=t, error=None)
            t.start()
    if started:
        t.join(wait_s)
    with _nodes_lock:
        if _nodes_state["error"] is not None and not t.is_alive():
            raise _nodes_state["error"]
        if _nodes_state["nodes"] is not None:  # fresh, or the last answer while a new lookup hangs
            return list(_nodes_state["nodes"])
    raise TimeoutError(f"the Ray cluster at {os.environ.get('RAY_ADDRESS') or '(RAY_ADDRESS unset)'} did not answer "
                       f"within {wait_s:g} s")


def cluster_accelerator_types(source: NodesSource | None = None, *, wait_s: float = 3.0,
                              max_age_s: float = 60.0) -> list[str] | None:
    """The accelerator types of the cluster's live nodes (sorted), or None when the cluster did not answer
    within ``wait_s`` or failed (the New benchmark form then offers free text). See :func:`cluster_nodes`."""
    try:
        nodes = cluster_nodes(source, wait_s=wait_s, max_age_s=max_age_s)
    except Exception:  # noqa: BLE001 - unreachable cluster: free text
        return None
    return sorted({t for n in nodes if n.get("alive") for t in n.get("accelerator_types") or []})


def _gpu_share(job: Job) -> int:
    if job.kind == "export":
        return 0
    if job.kind == "llm_serve":
        return int((job.spec or {}).get("tensor_parallel_size") or 1)
    return 1


def node_rows(nodes: list[dict[str, Any]], *, url: str | None = None) -> list[dict[str, Any]]:
    """One row per Ray node joined with its running jobs and reported GPU memory."""
    with session_scope(url) as s:
        running = s.execute(select(Job).where(Job.status == "running", Job.worker_id.like("ray:%"))).scalars().all()
        events = s.execute(select(JobEvent.data).where(JobEvent.kind == "info").order_by(JobEvent.id.desc()).limit(500)).scalars().all()
    mem: dict[str, Any] = {}
    for d in events:
        if isinstance(d, dict) and d.get("node_id") and d.get("gpu_memory_bytes") and d["node_id"] not in mem:
            mem[d["node_id"]] = d["gpu_memory_bytes"]
    rows = []
    for n in nodes:
        jobs = [j for j in running if (j.worker_id or "")[4:].split("@")[0] == n["node_id"]]
        busy = min(n["gpus"], sum(_gpu_share(j) for j in jobs))
        gib = mem.get(n["node_id"])
        rows.append({
            "node": n["node_id"][:12], "ip": n["ip"], "alive": n["alive"],
            "gpu type": "/".join(n["accelerator_types"]) or "-", "gpus": n["gpus"],
            "gpu memory": f"{gib / 2**30:.0f} GiB" if gib else "-",
            "busy": busy, "free": n["gpus"] - busy if n["alive"] else 0,
            "jobs": ", ".join(f"#{j.id} {j.kind}" for j in jobs) or "-",
        })
    return rows


def local_devices() -> list[dict[str, Any]]:
    """This machine's devices: its NVIDIA GPUs (``nvidia-smi``) and the CPU."""
    devs = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        for line in out.strip().splitlines():
            idx, name, mib = (p.strip() for p in line.split(",")[:3])
            devs.append({"device": f"cuda:{idx}", "type": name, "memory": f"{float(mib) / 1024:.0f} GiB"})
    devs.append({"device": "cpu", "type": f"{os.cpu_count()} cores", "memory": "-"})
    return devs


def local_rows(devices: list[dict[str, Any]], *, url: str | None = None) -> list[dict[str, Any]]:
    """One row per local device with the running job holding it."""
    with session_scope(url) as s:
        running = s.execute(select(Job).where(Job.status == "running")).scalars().all()
    rows = []
    for d in devices:
        jobs = [j for j in running if j.device == d["device"]]
        rows.append({"machine": socket.gethostname(), **d, "busy": bool(jobs),
                     "jobs": ", ".join(f"#{j.id} {j.kind}" for j in jobs) or "-"})
    return rows


def render_machines(url: str | None, source: NodesSource | None = None, *, executor: str | None = None) -> None:
    """The panel (see the module doc). ``source`` overrides where the Ray nodes come from (tests)."""
    ex = (executor or os.environ.get("ENGINESCOPE_EXECUTOR") or "local").lower()
    st.subheader("Machines", anchor=False)
    if source is not None or ex == "ray":
        try:
            nodes = source() if source is not None else cluster_nodes()
        except Exception as exc:  # noqa: BLE001 - an unreachable cluster must not break the page
            st.error(f"Could not list the Ray cluster's nodes (RAY_ADDRESS={os.environ.get('RAY_ADDRESS') or 'unset'}): "
                     f"{type(exc).__name__}: {exc}")
            return
        rows = node_rows(nodes, url=url)
        alive = [r for r in rows if r["alive"]]
        st.caption(f"Ray cluster: {len(alive)} live node(s) of {len(rows)}, {sum(r['free'] for r in alive)} free GPU(s) "
                   f"of {sum(r['gpus'] for r in alive)}. One benchmark per GPU; a job pinned to a GPU type waits for a "
                   "node of that type.")
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="machines_nodes")
        return
    st.caption("Local worker: one job per device on this machine (set ENGINESCOPE_EXECUTOR=ray for a fleet: docs/fleet.md).")
    st.dataframe(pd.DataFrame(local_rows(local_devices(), url=url)), hide_index=True, key="machines_local")
