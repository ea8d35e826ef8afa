"""``enginescope worker`` and ``enginescope jobs list|show|cancel|logs|submit``."""

from __future__ import annotations

import json
import logging
import time

import typer

from engine_runner.commands import DB_URL_HELP

jobs_app = typer.Typer(help="Inspect and control the job queue.", no_args_is_help=True)


def _fmt_time(t: object) -> str:
    from db.jobs import as_utc

    t = as_utc(t)  # type: ignore[arg-type]
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _duration(job: object) -> str:
    from db.jobs import as_utc
    from db.models import utcnow

    start = as_utc(job.started_at)  # type: ignore[attr-defined]
    end = as_utc(job.finished_at) or (utcnow() if job.status == "running" else None)  # type: ignore[attr-defined]
    return f"{(end - start).total_seconds():.1f}s" if start and end else "-"


def register(app: typer.Typer) -> None:
    """Add ``worker`` and the ``jobs`` group."""

    @app.command("worker")
    def worker_cmd(
        once: bool = typer.Option(False, "--once", help="Run the jobs queued now (and those queued meanwhile), then exit."),
        poll_interval: float = typer.Option(1.0, "--poll-interval", min=0.05, help="Seconds between queue polls and heartbeats."),
        heartbeat_timeout: float = typer.Option(60.0, "--heartbeat-timeout", min=1.0,
                                                help="Seconds without heartbeat after which a running job of a dead worker is failed."),
        grace: float = typer.Option(10.0, "--grace", min=0.0, help="Seconds between SIGTERM and SIGKILL when stopping a job."),
        db_url: str = typer.Option(None, "--db-url", help=DB_URL_HELP),
        executor: str = typer.Option(None, "--executor", help="local (this machine, the default) or ray (a Ray cluster); "
                                                              "default $ENGINESCOPE_EXECUTOR or local."),
        ray_address: str = typer.Option(None, "--ray-address", help="ray: the cluster's address HOST:PORT (default $RAY_ADDRESS)."),
        gpu_type: str = typer.Option(None, "--gpu-type", help="ray: accelerator type (H100, A10G ...) for jobs whose spec "
                                                              "names none (default: any node)."),
        max_in_flight: int = typer.Option(None, "--max-in-flight", min=1, help="ray: most jobs submitted at once "
                                                                               "(default: the cluster's GPU count)."),
        device: list[str] = typer.Option(None, "--device", help="local: claim only jobs on this device (cpu, cuda:1 ...; "
                                                               "repeatable). Default: any device."),
    ) -> None:
        """Claim queued jobs and run each in its own child process and process group (one job per device),
        here (--executor local) or on a Ray cluster (--executor ray: one job per GPU, placed by Ray)."""
        from engine_runner.executors import executor_name
        from engine_runner.executors import ray_address as default_ray_address

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if executor_name(executor) == "ray":
            from engine_runner.executors.ray_executor import RayDispatcher

            if device:
                from profiles.errors import InputError

                raise InputError("--device applies to --executor local only (Ray places jobs on GPUs itself)")

            d = RayDispatcher(db_url, default_ray_address(ray_address), gpu_type=gpu_type, poll_interval_s=poll_interval,
                              heartbeat_timeout_s=heartbeat_timeout, grace_s=grace, max_in_flight=max_in_flight)
            d.install_signal_handlers()
            d.run(once=once)
            return
        if gpu_type or ray_address or max_in_flight:
            from profiles.errors import InputError

            raise InputError("--ray-address, --gpu-type and --max-in-flight apply to --executor ray only")
        from engine_runner.worker import Worker

        for dev in device or []:
            if not dev.strip() or len(dev) > 64:
                from profiles.errors import InputError

                raise InputError(f"--device {dev!r}: a device name such as cpu or cuda:0 (1 to 64 characters)")
        w = Worker(db_url, poll_interval_s=poll_interval, heartbeat_timeout_s=heartbeat_timeout, grace_s=grace,
                   devices=list(device) if device else None)
        w.install_signal_handlers()
        w.run(once=once)

    @jobs_app.command("list")
    def list_cmd(limit: int = typer.Option(30, "--limit", min=1, help="How many of the newest jobs.")) -> None:
        """The newest jobs: id, kind, device, status, progress, start, duration."""
        from db.jobs import list_jobs

        typer.echo(f"{'id':>5}  {'kind':<12} {'device':<8} {'status':<10} {'prog':>5}  {'started (UTC)':<19}  {'took':>8}  message")
        for j in list_jobs(limit):
            msg = (j.error or j.progress_message or "").splitlines()[0][:60] if (j.error or j.progress_message) else ""
            typer.echo(f"{j.id:>5}  {j.kind:<12} {j.device:<8} {j.status:<10} {j.progress:>5.0%}  "
                       f"{_fmt_time(j.started_at):<19}  {_duration(j):>8}  {msg}")

    @jobs_app.command("show")
    def show_cmd(job_id: int = typer.Argument(..., help="Job id."),
                 events: int = typer.Option(20, "--events", min=0, help="How many of the last events to print.")) -> None:
        """One job's fields, its last events and its error."""
        from db.jobs import get_job, job_events
        from profiles.errors import InputError

        j = get_job(job_id)
        if j is None:
            raise InputError(f"job {job_id} does not exist")
        for k in ("id", "kind", "status", "device", "progress", "progress_message", "origin", "model_id", "worker_id",
                  "pid", "timeout_s", "cancel_requested", "log_path"):
            typer.echo(f"{k:>17}: {getattr(j, k)}")
        for k in ("created_at", "started_at", "heartbeat_at", "finished_at"):
            typer.echo(f"{k:>17}: {_fmt_time(getattr(j, k))}")
        typer.echo(f"{'spec':>17}: {json.dumps(j.spec)}")
        evs = job_events(job_id)[-events:] if events else []
        if evs:
            typer.echo("events:")
            for e in evs:
                typer.echo(f"  {_fmt_time(e.ts)} {e.kind:<8} {e.message}")
        if j.error:
            typer.echo("error:\n" + j.error)

    @jobs_app.command("cancel")
    def cancel_cmd(job_id: int = typer.Argument(..., help="Job id.")) -> None:
        """Cancel a job: a queued one at once, a running one through its worker (SIGTERM, grace, SIGKILL)."""
        from db.jobs import get_job, request_cancel
        from profiles.errors import InputError

        if request_cancel(job_id):
            j = get_job(job_id)
            typer.echo(f"job {job_id}: " + ("cancelled" if j and j.status == "cancelled" else "cancel requested; the worker stops it"))
            return
        j = get_job(job_id)
        if j is None:
            raise InputError(f"job {job_id} does not exist")
        typer.echo(f"job {job_id} already ended ({j.status}); nothing to cancel")

    @jobs_app.command("logs")
    def logs_cmd(job_id: int = typer.Argument(..., help="Job id."),
                 lines: int = typer.Option(80, "--lines", "-n", min=1, help="Lines from the end of the log."),
                 follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends.")) -> None:
        """Print the tail of a job's log file (home()/logs/job-<id>.log)."""
        from db.jobs import get_job, log_tail
        from db.models import TERMINAL_STATUSES
        from profiles.errors import InputError

        j = get_job(job_id)
        if j is None:
            raise InputError(f"job {job_id} does not exist")
        if not j.log_path:
            # an inline CLI job (bench/serve-bench, owned by "cli@host:pid") logs to its command's stderr
            if (j.worker_id or "").startswith("cli@"):
                typer.echo(f"job {job_id} ({j.status}) ran in-process from the CLI: its log went to that command's "
                           f"stderr (no log file); its events and error: enginescope jobs show {job_id}", err=True)
                return
            typer.echo(f"job {job_id} ({j.status}) has no log yet", err=True)
            if not follow:
                return
        typer.echo(log_tail(j, lines))
        if not follow:
            return
        pos = _size(j.log_path)
        while True:
            time.sleep(0.5)
            j = get_job(job_id)
            if j is None:
                return
            if j.log_path:
                size = _size(j.log_path)
                if size > pos:
                    with open(j.log_path, "rb") as f:
                        f.seek(pos)
                        typer.echo(f.read(size - pos).decode("utf-8", errors="replace"), nl=False)
                    pos = size
            if j.status in TERMINAL_STATUSES:
                return

    @jobs_app.command("submit")
    def submit_cmd(kind: str = typer.Argument(..., help="Job kind, e.g. clock_check."),
                   spec: str = typer.Option("{}", "--spec", help='Spec as JSON, e.g. \'{"duration_s": 2, "samples": 100000}\'.'),
                   device: str = typer.Option("cpu", "--device", help="Device the job occupies (cpu, cuda:0 ...)."),
                   timeout: float = typer.Option(None, "--timeout", help="Seconds before the worker fails the job as timed out."),
                   gpu_type: str = typer.Option(None, "--gpu-type", help="Ray executor: run it only on a node with this "
                                                                         "accelerator type (H100, A10G ...); stored as spec.gpu_type.")) -> None:
        """Queue a job for the worker; prints its id."""
        from db.jobs import submit_job
        from profiles.errors import InputError

        try:
            spec_d = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise InputError(f"--spec is not valid JSON: {exc}") from None
        if gpu_type:
            from engine_runner.executors.resources import normalize_gpu_type

            spec_d["gpu_type"] = normalize_gpu_type(gpu_type)
        typer.echo(submit_job(kind, spec_d, device=device, timeout_s=timeout, origin="cli"))

    app.add_typer(jobs_app, name="jobs")


def _size(path: str | None) -> int:
    import os

    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0
