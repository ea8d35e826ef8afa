"""The worker: claims queued jobs and runs each in its own child process and process group.

One :class:`Worker` loop, every ``poll_interval_s``:

1. for each live child: heartbeat its job (``jobs.heartbeat_at``), read ``cancel_requested``, enforce
   ``timeout_s``; to stop a child it sends SIGTERM to the child's process group, waits ``grace_s``,
   then SIGKILLs the group;
2. for each child that exited: kill what is left of its process group, and record the outcome when
   the child did not (crash, SIGKILL, OOM: ``failed`` with the last 40 lines of its log in ``error``;
   timeout: ``failed``, "timed out after N s"; cancel: ``cancelled``);
3. claim queued jobs (:func:`db.jobs.claim_next`) while a device is free and start their children:
   ``[sys.executable, "-m", "engine_runner.child", str(job_id)]`` with ``start_new_session=True`` and
   stdout/stderr appended to ``home()/logs/job-<id>.log``;
4. now and then fail stale running jobs left by a dead worker (:func:`db.jobs.fail_stale`).

A device runs one job at a time (``"cpu"`` included: CPU benchmarks must not overlap); jobs on
different devices run concurrently. :meth:`Worker.stop` (SIGTERM/SIGINT in ``enginescope worker``)
ends the loop, stops all children and fails their jobs with "worker stopped".
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import OperationalError

from db import jobs as q
from db.config import db_url, home
from db.models import TERMINAL_STATUSES, Job

log = logging.getLogger("enginescope.worker")


@dataclass
class ChildJob:
    """A running child: its job id, device, process, monotonic start and stop bookkeeping (seconds)."""

    job_id: int
    kind: str
    device: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    timeout_s: float | None
    started_mono_s: float = field(default_factory=time.monotonic)
    stop_reason: str | None = None  # "cancel" | "timeout" | "stop"
    kill_at_mono_s: float | None = None

    @property
    def pgid(self) -> int:
        """Process group id of the child (= its pid: it leads its own session)."""
        return self.proc.pid


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("no permission to signal process group %d", pgid)
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (signal 0 probe)."""
    return signal_group(pgid, 0)


class Worker:
    """Claims and runs jobs from the database at ``url``.

    Args:
        url: database URL (None = ``ENGINESCOPE_DB_URL`` / SQLite in ``ENGINESCOPE_HOME``).
        poll_interval_s: seconds between loop ticks (heartbeats, cancel checks, claims).
        heartbeat_timeout_s: a running job whose heartbeat is older than this is stale (failed).
        grace_s: seconds between SIGTERM and SIGKILL when stopping a child.
        worker_id: ``jobs.worker_id`` of this worker (default ``worker@<host>:<pid>``).
        python: interpreter for the children (default ``sys.executable``).
        extra_env: variables added to the children's environment (the Ray runner names its node there).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        poll_interval_s: float = 1.0,
        heartbeat_timeout_s: float = 60.0,
        grace_s: float = 10.0,
        worker_id: str | None = None,
        python: str | None = None,
        extra_env: dict[str, str] | None = None,
        devices: list[str] | None = None,
    ) -> None:
        self.url = url or db_url()
        #: the devices this worker claims jobs on (``--device``); None = any device
        self.devices = sorted(set(devices)) if devices else None
        self.poll_interval_s = poll_interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.grace_s = grace_s
        self.worker_id = worker_id or q.worker_identity("worker")
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.children: dict[int, ChildJob] = {}
        self._stop = threading.Event()
        self._stop_signal = "stop requested"
        self._last_stale_check_s = 0.0

    # -- control ---------------------------------------------------------------------------------

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to end (thread- and signal-safe); running children are stopped and failed."""
        self._stop_signal = reason
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT -> :meth:`stop` (call from the main thread)."""
        def handler(signum: int, _frame: object) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stop(f"worker received {signal.Signals(signum).name}")
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- main loop -------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Run until :meth:`stop` (or, with ``once``, until no job is queued or running). Returns the
        number of jobs this worker started."""
        log.info("worker %s on %s (poll %.2g s, heartbeat timeout %g s, grace %g s, devices %s)", self.worker_id,
                 self.url, self.poll_interval_s, self.heartbeat_timeout_s, self.grace_s,
                 ", ".join(self.devices) if self.devices else "any")
        self._fail_stale(force=True)
        started = 0
        try:
            while not self._stop.is_set():
                try:
                    self._supervise()
                    started += self._claim_and_start()
                    self._fail_stale()
                except OperationalError as exc:
                    # database locked or briefly unreachable (PostgreSQL restart): keep the children, retry
                    log.warning("database error, retrying in %.2g s: %s", self.poll_interval_s, str(exc).splitlines()[0])
                else:
                    if once and not self.children:
                        break
                self._stop.wait(self.poll_interval_s)
        finally:
            self._shutdown()
        log.info("worker %s exits after starting %d job(s)", self.worker_id, started)
        return started

    def run_claimed(self, job: Job) -> str:
        """Run one job already claimed elsewhere (the Ray dispatcher) to its end on this machine.

        The same child, log file and outcome rules as :meth:`run`: heartbeats, cancel (``cancel_requested``),
        timeout, SIGTERM / grace / SIGKILL of the child's process group. The log goes to this machine's
        ``home()/logs/job-<id>.log`` (a shared ENGINESCOPE_HOME makes it the dashboard's path too). A
        ``KeyboardInterrupt`` (what ``ray.cancel`` raises in a running task) stops the child as a cancel.
        Returns the job's final status.
        """
        job.log_path = str(q.job_log_path(job.id))
        self._start(job)
        try:
            while self.children:
                try:
                    self._supervise()
                except OperationalError as exc:
                    log.warning("database error, retrying in %.2g s: %s", self.poll_interval_s, str(exc).splitlines()[0])
                self._stop.wait(self.poll_interval_s)
        except KeyboardInterrupt:
            log.info("job %d: interrupted (ray.cancel); stopping its child as a cancel", job.id)
            for c in self.children.values():
                if c.stop_reason is None:
                    self._terminate(c, "cancel")
        finally:
            self._shutdown()
        final = q.get_job(job.id, url=self.url)
        return final.status if final else "failed"

    def _fail_stale(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_stale_check_s < max(self.poll_interval_s, self.heartbeat_timeout_s / 4):
            return
        self._last_stale_check_s = now
        for job_id in q.fail_stale(self.heartbeat_timeout_s, url=self.url):
            if job_id not in self.children:
                log.warning("failed stale job %d (its worker is gone or stopped heartbeating)", job_id)

    def _claim_and_start(self) -> int:
        n = 0
        while not self._stop.is_set():
            busy = {c.device for c in self.children.values()}
            job = q.claim_next(self.worker_id, busy, only_devices=self.devices, url=self.url)
            if job is None:
                return n
            self._start(job)
            n += 1
        return n

    def _start(self, job: Job) -> None:
        log_path = Path(job.log_path) if job.log_path else q.job_log_path(job.id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, ENGINESCOPE_DB_URL=self.url, ENGINESCOPE_HOME=str(home()), PYTHONUNBUFFERED="1",
                   **self.extra_env)
        with open(log_path, "ab") as f:
            f.write(f"=== job {job.id} ({job.kind}) on {job.device}, claimed by {self.worker_id} at "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S%z')} ===\n".encode())
            f.flush()
            try:
                proc = subprocess.Popen([self.python, "-m", "engine_runner.child", str(job.id)],
                                        stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=env, close_fds=True)
            except OSError as exc:
                log.error("could not start the child of job %d: %s", job.id, exc)
                q.finish_job(job.id, "failed", f"could not start the child process ({self.python}): {exc}",
                             url=self.url)
                return
        q.set_child(job.id, proc.pid, log_path, url=self.url)
        self.children[job.id] = ChildJob(job.id, job.kind, job.device, proc, log_path, job.timeout_s)
        log.info("job %d (%s) started on %s: pid %d, log %s", job.id, job.kind, job.device, proc.pid, log_path)

    def _supervise(self) -> None:
        """Heartbeat, cancel, timeout and reap all children once."""
        if not self.children:
            return
        live = [c.job_id for c in self.children.values() if c.proc.poll() is None]
        cancel_ids = q.heartbeat(live, url=self.url)
        now = time.monotonic()
        for c in list(self.children.values()):
            if c.proc.poll() is not None:
                self._reap(c)
                continue
            if c.stop_reason is None:
                if c.job_id in cancel_ids:
                    self._terminate(c, "cancel")
                elif c.timeout_s is not None and now - c.started_mono_s > c.timeout_s:
                    self._terminate(c, "timeout")
            elif c.kill_at_mono_s is not None and now >= c.kill_at_mono_s:
                log.warning("job %d: child %d still alive %g s after SIGTERM; sending SIGKILL to its group",
                            c.job_id, c.pgid, self.grace_s)
                signal_group(c.pgid, signal.SIGKILL)
                c.kill_at_mono_s = None

    def _terminate(self, c: ChildJob, reason: str) -> None:
        log.info("job %d: stopping child %d (%s): SIGTERM to its process group", c.job_id, c.pgid, reason)
        c.stop_reason = reason
        c.kill_at_mono_s = time.monotonic() + self.grace_s
        signal_group(c.pgid, signal.SIGTERM)

    def _reap(self, c: ChildJob) -> None:
        """The child exited: clean its group and make sure the job row has a terminal status.

        The child stays in :attr:`children` until its outcome is written: when the database refuses the
        write (locked, disk full, unreachable) the ``OperationalError`` propagates, the loop logs it and the
        next tick reaps the child again, so its job is never left ``running`` without a supervisor."""
        rc = c.proc.wait()
        if group_alive(c.pgid):  # grandchildren (e.g. a server the job started) must not outlive it
            log.warning("job %d: processes left in group %d after the child exited; killing them", c.job_id, c.pgid)
            signal_group(c.pgid, signal.SIGKILL)
        self._record_end(c, rc)
        del self.children[c.job_id]

    def _record_end(self, c: ChildJob, rc: int) -> None:
        how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"
        if c.stop_reason == "timeout":
            q.finish_job(c.job_id, "failed", f"timed out after {c.timeout_s:g} s",
                         from_statuses=("queued", "running", "cancelled"), url=self.url)
        elif c.stop_reason == "stop":
            q.finish_job(c.job_id, "failed", f"worker stopped ({self._stop_signal}) while the job ran; child {how}",
                         from_statuses=("queued", "running", "cancelled"), url=self.url)
        elif c.stop_reason == "cancel":
            q.finish_job(c.job_id, "cancelled", f"cancelled by the user; child {how}", url=self.url)
        else:
            tail = q.log_tail_path(c.log_path, q.ERROR_LOG_LINES)
            q.finish_job(c.job_id, "failed",
                         f"child process {c.proc.pid} {how} without recording a result\n"
                         f"--- last {q.ERROR_LOG_LINES} lines of {c.log_path} ---\n{tail}", url=self.url)
        job = q.get_job(c.job_id, url=self.url)
        status = job.status if job else "?"
        log.info("job %d ended %s (child %s)", c.job_id, status, how)
        if status not in TERMINAL_STATUSES:  # pragma: no cover - finish_job covers every active status
            log.error("job %d left in status %s", c.job_id, status)

    def _shutdown(self) -> None:
        """Stop all children (SIGTERM, grace, SIGKILL) and record their jobs as failed "worker stopped"."""
        if not self.children:
            return
        log.info("stopping %d running job(s): %s", len(self.children), sorted(self.children))
        for c in self.children.values():
            if c.stop_reason is None or c.stop_reason == "cancel":
                # a job the user cancelled stays "cancelled"; everything else is a worker stop
                self._terminate(c, c.stop_reason or "stop")
        deadline = time.monotonic() + self.grace_s
        while self.children and time.monotonic() < deadline:
            for c in list(self.children.values()):
                if c.proc.poll() is not None:
                    self._reap(c)
            time.sleep(0.05)
        for c in list(self.children.values()):
            signal_group(c.pgid, signal.SIGKILL)
            c.proc.wait()
            try:
                self._reap(c)
            except OperationalError as exc:
                # the next worker to start fails the job as stale (this worker's pid is gone by then)
                log.error("job %d: could not record its end in the database: %s", c.job_id, str(exc).splitlines()[0])
                self.children.pop(c.job_id, None)
