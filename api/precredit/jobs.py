"""Batch jobs started over the API, bounded: recorded in `batch_jobs`, run by a batch worker process (never
in the processes that serve requests), cancellable, audited.

    POST /v1/batch/precredit -> JobStore.submit: per-key quotas (active, per day) and a bounded queue,
                                checked and the row inserted in one serialised transaction
    a batch worker           -> Worker: claims a job with a lease (at most settings.batch_max_running
                                running over every worker of the store), renews the lease while it runs,
                                honours a cancel request after the partition in progress
    the service              -> JobRunner: the store, plus (settings.batch_worker = "service") a
                                supervisor thread that starts one `indexloan batch worker` child process per
                                machine while jobs wait; the child exits when idle

A job cut short by a stop of its worker goes back to the queue and resumes from its finished partitions
(`<batch dir>/<job id>.parts`). A job whose worker vanished (kill -9, a lost machine) keeps status
"running" until its lease expires; then another worker takes it over, at most `batch_max_retries` times,
after which it is failed with the reason. So a restart never floods the machine: what runs is bounded by
the concurrency limit, whatever was queued or running before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from api.precredit.run import BatchInputError, Progress, RunOptions, RunResult, run_precredit
from api.tables import batch_jobs
from features.settings import get_settings
from features.store import audit
from features.store.db import StoreUnavailableError

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.5
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


class JobInterrupted(Exception):
    """The worker is stopping: the job goes back to the queue and resumes at the next start."""


class JobCancelled(Exception):
    """A cancel request was seen: the run stops and leaves nothing behind."""


class JobLost(Exception):
    """The job's lease was taken over by another worker (this one stalled past it): stop, touch nothing."""


class JobRefused(Exception):
    """A request over a quota or a full queue: HTTP `status` with Retry-After, in English and Chinese."""

    def __init__(self, status: int, en: str, zh: str, retry_after: int) -> None:
        super().__init__(f"{en} / {zh}")
        self.status, self.en, self.zh, self.retry_after = status, en, zh, retry_after


class JobStateError(Exception):
    """The job is not in a state that allows the operation (cancelling a finished job)."""


@dataclass(frozen=True)
class PrecreditRequest:
    as_of: dt.date
    products: list[str] | None
    reasons: int
    fmt: str  # parquet | csv
    engine: str  # local | dask (a LocalCluster on loopback)
    partitions: int | None

    def to_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "products": self.products, "reasons": self.reasons,
                "format": self.fmt, "engine": self.engine, "partitions": self.partitions}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PrecreditRequest:
        return cls(dt.date.fromisoformat(d["as_of"]), d["products"], d["reasons"], d["format"], d["engine"],
                   d["partitions"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without their zone; they were stored in UTC."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def default_batch_dir() -> Path:
    return get_settings().resolved_batch_dir


def serialised(conn: sa.Connection) -> None:
    """Make the rest of this transaction run alone among the store's job transactions (the quota checks
    and the claims count rows, then write): PostgreSQL takes an advisory lock; on SQLite a first write takes
    the file's reserved lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7140014)")  # a constant of this table's own
    else:
        conn.execute(batch_jobs.update().where(sa.false()).values(status=batch_jobs.c.status))


def _count(conn: sa.Connection, *where: Any) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(batch_jobs).where(*where)).scalar_one()


def _remove_outputs(batch_dir: Path, job_id: str, fmt: str) -> None:
    """Nothing of a cancelled or failed run stays behind: partitions, output, summary."""
    shutil.rmtree(batch_dir / f"{job_id}.parts", ignore_errors=True)
    out = batch_dir / f"{job_id}.{fmt}"
    for path in (out, out.with_name(out.stem + ".summary.json")):
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------ the store of jobs (what requests do)


class JobStore:
    def __init__(self, engine: sa.Engine, batch_dir: Path | None = None) -> None:
        self.engine = engine
        self.batch_dir = batch_dir or default_batch_dir()

    def submit(self, request: PrecreditRequest, key_id: int, actor: str) -> str:
        """Record a queued job, or raise JobRefused (quota or queue full; nothing recorded)."""
        settings = get_settings()
        job_id = str(uuid.uuid4())
        now = _now()
        with self.engine.begin() as conn:
            serialised(conn)
            mine = batch_jobs.c.api_key_id == key_id
            active = _count(conn, mine, batch_jobs.c.status.in_(ACTIVE))
            if active >= settings.batch_max_active_per_key:
                raise JobRefused(429, f"this key already has {active} batch jobs queued or running (at most "
                                      f"{settings.batch_max_active_per_key}); wait for one to finish or cancel one",
                                 f"该密钥已有{active}个批量任务排队或运行中（上限{settings.batch_max_active_per_key}个）；"
                                 "请等待其完成或取消其中一个", settings.retry_after_seconds)
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            today = _count(conn, mine, batch_jobs.c.created_at >= midnight)
            if today >= settings.batch_max_per_key_per_day:
                until = int((midnight + dt.timedelta(days=1) - now).total_seconds()) + 1
                raise JobRefused(429, f"this key has started {today} batch jobs today (UTC; at most "
                                      f"{settings.batch_max_per_key_per_day} a day); retry tomorrow",
                                 f"该密钥今天（UTC）已发起{today}个批量任务（每日上限"
                                 f"{settings.batch_max_per_key_per_day}个）；请明天再试", until)
            queued = _count(conn, batch_jobs.c.status == "queued")
            if queued >= settings.batch_max_queued:
                raise JobRefused(503, f"the batch queue is full ({queued} jobs waiting); retry later",
                                 f"批量任务队列已满（{queued}个任务等待中）；请稍后再试", settings.retry_after_seconds)
            conn.execute(batch_jobs.insert().values(
                job_id=job_id, kind="precredit", status="queued", api_key_id=key_id, requested_by=actor,
                created_at=now, request_json=json.dumps(request.to_json()), partitions_done=0))
            audit.append(conn, actor, "batch.precredit.request", f"batch:{job_id}", request.to_json())
        return job_id

    def get(self, job_id: str) -> sa.Row | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(batch_jobs).where(batch_jobs.c.job_id == job_id)).first()

    def result_path(self, job_id: str, fmt: str) -> Path:
        return self.batch_dir / f"{job_id}.{fmt}"

    def cancel(self, job_id: str, actor: str) -> sa.Row:
        """A queued job is cancelled at once; a running one when its worker next looks (after the partition
        in progress). Cancelling a cancelled job again changes nothing; a finished one is a JobStateError."""
        with self.engine.begin() as conn:
            serialised(conn)
            row = conn.execute(sa.select(batch_jobs).where(batch_jobs.c.job_id == job_id)).first()
            if row is None:
                raise KeyError(job_id)
            if row.status in ("succeeded", "failed"):
                raise JobStateError(f"job {job_id} has already {row.status}; there is nothing to cancel")
            if row.status == "cancelled" or row.cancel_requested_at is not None:
                return row
            now = _now()
            values: dict[str, Any] = {"cancel_requested_by": actor, "cancel_requested_at": now}
            if row.status == "queued":
                values.update(status="cancelled", finished_at=now)
            conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == job_id).values(**values))
            audit.append(conn, actor, "batch.precredit.cancel", f"batch:{job_id}", {"was": row.status})
            if row.status == "queued":
                audit.append(conn, actor, "batch.precredit.finish", f"batch:{job_id}", {"status": "cancelled"})
        if row.status == "queued":  # a queued job may hold partitions of an interrupted earlier start
            _remove_outputs(self.batch_dir, job_id, json.loads(row.request_json)["format"])
        return self.get(job_id)

    def waiting(self) -> bool:
        """Whether a worker would find something to do: a queued job, or a running one whose lease expired."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(batch_jobs.c.job_id).where(_claimable(_now())).limit(1)).first() is not None


def _expired(now: dt.datetime) -> Any:
    return sa.and_(batch_jobs.c.status == "running",
                   sa.or_(batch_jobs.c.lease_expires_at.is_(None), batch_jobs.c.lease_expires_at < now))


def _claimable(now: dt.datetime) -> Any:
    return sa.or_(batch_jobs.c.status == "queued", _expired(now))


# ------------------------------------------------------------------ the worker (runs jobs, in its own process)


@dataclass
class _Running:
    job_id: str
    thread: threading.Thread
    cancel: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)


class Worker:
    """Claims jobs with a lease and runs up to `batch_max_running` of them, each in a thread of this process.
    `run()` until `stop` is set (the jobs in progress go back to the queue), or until idle for `idle_exit`."""

    def __init__(self, engine: sa.Engine, models_dir: str | None = None, batch_dir: Path | None = None,
                 name: str | None = None) -> None:
        self.engine = engine
        self.models_dir = models_dir
        self.batch_dir = batch_dir or default_batch_dir()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the loop

    def run(self, idle_exit: float | None = None) -> None:
        settings = get_settings()
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        heartbeat = threading.Thread(target=self._heartbeat, name="batch-lease", daemon=True)
        heartbeat.start()
        idle_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                self._reap()
                try:
                    job_id = self.claim() if len(self._running) < settings.batch_max_running else None
                except (sa.exc.SQLAlchemyError, StoreUnavailableError) as error:  # store down: look again later
                    self._outage(error)
                    job_id = None
                if job_id is not None:
                    self._start(job_id)
                    continue  # perhaps another slot is free
                if self._running:
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    return
                self.stopping.wait(settings.batch_poll_seconds)
        finally:
            self.stopping.set()
            for running in list(self._running.values()):
                running.thread.join()
            heartbeat.join(5)

    def stop(self) -> None:
        self.stopping.set()

    _last_outage_log = 0.0

    def _outage(self, error: BaseException) -> None:
        """At most one line a minute while the store cannot be reached."""
        if time.monotonic() - self._last_outage_log >= 60:
            self._last_outage_log = time.monotonic()
            log.warning("batch worker %s: the store is unavailable (%s); retrying", self.name, type(error).__name__)

    def _start(self, job_id: str) -> None:
        running = _Running(job_id, threading.Thread(target=self._run, args=(job_id,), name=f"batch-{job_id[:8]}",
                                                    daemon=True))
        with self._lock:
            self._running[job_id] = running
        running.thread.start()

    def _reap(self) -> None:
        with self._lock:
            for job_id in [j for j, r in self._running.items() if not r.thread.is_alive()]:
                del self._running[job_id]

    # ------------------------------------------------------------------ claims and leases

    def claim(self) -> str | None:
        """Take the next job (a running one whose worker vanished first, then the oldest queued) if fewer
        than `batch_max_running` jobs hold a live lease over the whole store; None otherwise."""
        settings = get_settings()
        now = _now()
        failed: list[tuple[str, str]] = []
        with self.engine.begin() as conn:
            serialised(conn)
            for row in conn.execute(sa.select(batch_jobs).where(_expired(now)).order_by(batch_jobs.c.created_at)):
                if row.cancel_requested_at is not None:  # its worker died after the cancel: nothing to resume
                    self._close(conn, row, "cancelled", {})
                    _remove_outputs(self.batch_dir, row.job_id, json.loads(row.request_json)["format"])
                elif row.retries >= settings.batch_max_retries:
                    reason = (f"the worker running this job stopped without finishing it {row.retries + 1} times "
                              f"(lease expired; at most {settings.batch_max_retries} take-overs); given up")
                    self._close(conn, row, "failed", {"error": reason})
                    failed.append((row.job_id, json.loads(row.request_json)["format"]))
            live = _count(conn, batch_jobs.c.status == "running", batch_jobs.c.lease_expires_at >= now)
            if live >= settings.batch_max_running:
                return None
            row = conn.execute(sa.select(batch_jobs).where(_claimable(now))
                               .order_by((batch_jobs.c.status == "queued").asc(), batch_jobs.c.created_at)
                               .limit(1)).first()
            if row is None:
                return None
            taken_over = row.status == "running"
            conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == row.job_id).values(
                status="running", worker=self.name, started_at=now, error=None,
                lease_expires_at=now + dt.timedelta(seconds=settings.batch_lease_seconds),
                retries=batch_jobs.c.retries + (1 if taken_over else 0)))
            if taken_over:
                log.warning("batch job %s: its worker %s stopped; taken over by %s", row.job_id, row.worker, self.name)
        for job_id, fmt in failed:
            _remove_outputs(self.batch_dir, job_id, fmt)
        return row.job_id

    def _close(self, conn: sa.Connection, row: Any, status: str, values: dict[str, Any]) -> None:
        conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == row.job_id).values(
            status=status, finished_at=_now(), lease_expires_at=None, **values))
        audit.append(conn, row.requested_by, "batch.precredit.finish", f"batch:{row.job_id}",
                     {"status": status, **({"error": values["error"]} if "error" in values else {})})

    def _heartbeat(self) -> None:
        """Renew the leases of the jobs this worker runs; pass cancel requests on; notice a lost lease."""
        while not self.stopping.wait(get_settings().batch_lease_seconds / 3):
            with contextlib.suppress(Exception):  # a store outage: the progress writes fail the job anyway
                self.renew()

    def renew(self) -> None:
        with self._lock:
            running = dict(self._running)
        if not running:
            return
        now = _now()
        until = now + dt.timedelta(seconds=get_settings().batch_lease_seconds)
        mine = sa.and_(batch_jobs.c.job_id.in_(list(running)), batch_jobs.c.worker == self.name,
                       batch_jobs.c.status == "running")
        with self.engine.begin() as conn:
            conn.execute(batch_jobs.update().where(mine).values(lease_expires_at=until))
            held = {r.job_id: r.cancel_requested_at for r in
                    conn.execute(sa.select(batch_jobs.c.job_id, batch_jobs.c.cancel_requested_at).where(mine))}
        for job_id, job in running.items():
            if job_id not in held:
                job.lost.set()
            elif held[job_id] is not None:
                job.cancel.set()

    # ------------------------------------------------------------------ one job

    def _held(self, job_id: str) -> Any:
        return sa.and_(batch_jobs.c.job_id == job_id, batch_jobs.c.worker == self.name,
                       batch_jobs.c.status == "running")

    def _set(self, job_id: str, **values: Any) -> int:
        with self.engine.begin() as conn:
            return conn.execute(batch_jobs.update().where(self._held(job_id)).values(**values)).rowcount

    def _run(self, job_id: str) -> None:
        row = self._fetch(job_id)
        if row is None:
            return
        job = self._running[job_id]
        request = PrecreditRequest.from_json(json.loads(row.request_json))
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if job.lost.is_set():
                raise JobLost
            if self.stopping.is_set():
                raise JobInterrupted
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_SECONDS or done == total:
                last[0] = now
                self.renew()  # picks up a cancel request (or a lost lease) at once
                if job.lost.is_set():
                    raise JobLost
                if job.cancel.is_set():
                    raise JobCancelled
                self._set(job_id, partitions_done=done, partitions_total=total)
            elif job.cancel.is_set():
                raise JobCancelled

        try:
            try:
                result = self._execute(job_id, request, progress)
            finally:
                self._clear_stray_output(job_id, request.fmt)
        except JobLost:
            log.warning("batch job %s: lease lost to another worker; stopped", job_id)
        except JobInterrupted:
            self._set(job_id, status="queued", worker=None, lease_expires_at=None)
        except JobCancelled:
            self._cancelled(job_id, row, request.fmt)
        except BatchInputError as error:
            self._finish(job_id, row, request.fmt, "failed", error=str(error))
        except Exception as error:  # noqa: BLE001 - recorded on the job, never a crashed worker
            log.exception("batch job %s failed", job_id)
            self._finish(job_id, row, request.fmt, "failed",
                         error=f"unexpected failure ({type(error).__name__}): {error}")
        else:
            output = result.summary["output"]
            self._finish(job_id, row, request.fmt, "succeeded", result_path=str(result.out),
                         result_sha256=output["sha256"], result_rows=output["rows"],
                         summary_json=json.dumps(result.summary, ensure_ascii=False))

    def _fetch(self, job_id: str) -> sa.Row | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(batch_jobs).where(self._held(job_id))).first()

    def _clear_stray_output(self, job_id: str, fmt: str) -> None:
        """The temporary output a stopped run may leave (run_precredit removes its own on the way out)."""
        for stray in self.batch_dir.glob(f".{job_id}.{fmt}.*.tmp"):
            stray.unlink(missing_ok=True)

    def _execute(self, job_id: str, request: PrecreditRequest, progress: Progress) -> RunResult:
        from api.precredit.inputs import build_context, load_model, run_columns
        from api.workbench.store import ProductVersions
        from features.store.snapshot import population_features, snapshot_path

        model = load_model(self.engine, self.models_dir, None)
        known = ProductVersions(self.engine).published()[1]  # seeds + the versions approved in the store
        features = population_features(request.as_of, self.engine,
                                       run_columns(request.as_of, request.products, model, known))
        ctx, describe, features = build_context(features, request.as_of, request.products, request.reasons, model,
                                                known)
        options = RunOptions(self.batch_dir / f"{job_id}.{request.fmt}", request.engine, None, request.partitions,
                             work_dir=self.batch_dir / f"{job_id}.parts")
        return run_precredit(ctx, features, describe, options, progress, snapshot_path(self.engine, request.as_of))

    def _cancelled(self, job_id: str, row: Any, fmt: str) -> None:
        _remove_outputs(self.batch_dir, job_id, fmt)
        with self.engine.begin() as conn:
            if conn.execute(batch_jobs.update().where(self._held(job_id)).values(
                    status="cancelled", finished_at=_now(), lease_expires_at=None)).rowcount:
                audit.append(conn, row.requested_by, "batch.precredit.finish", f"batch:{job_id}",
                             {"status": "cancelled"})

    def _finish(self, job_id: str, row: Any, fmt: str, status: str, **values: Any) -> None:
        """Record the outcome, unless a cancel request came in meanwhile (then nothing is published)."""
        with self.engine.begin() as conn:
            done = conn.execute(batch_jobs.update().where(self._held(job_id),
                                                          batch_jobs.c.cancel_requested_at.is_(None))
                                .values(status=status, finished_at=_now(), lease_expires_at=None, **values)).rowcount
            if done:
                detail = {"status": status, **{k: values[k] for k in ("result_sha256", "result_rows", "error")
                                               if k in values}}
                audit.append(conn, row.requested_by, "batch.precredit.finish", f"batch:{job_id}", detail)
        if not done:
            self._cancelled(job_id, row, fmt)


# ------------------------------------------------------------------ what the service holds


class JobRunner(JobStore):
    """The service's side: the job store, and (settings.batch_worker = "service") a supervisor thread that
    starts one batch worker process per machine and store while jobs are waiting. The process holding the
    machine's lock (in the runtime directory) starts it; when that process dies, its child stops too (its
    stdin closes) and another service process takes the lock."""

    def __init__(self, engine: sa.Engine, models_dir: str | None = None, batch_dir: Path | None = None) -> None:
        super().__init__(engine, batch_dir)
        self.models_dir = models_dir
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen | None = None
        self._lock_handle: Any = None

    def start(self) -> None:
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        if get_settings().batch_worker != "service":
            return
        self._thread = threading.Thread(target=self._supervise, name="batch-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._stop_child(timeout)
        if self._lock_handle is not None:
            self._lock_handle.close()  # the lock goes with it
            self._lock_handle = None

    def submit(self, request: PrecreditRequest, key_id: int, actor: str) -> str:
        job_id = super().submit(request, key_id, actor)
        self._wake.set()  # start a worker now rather than at the next poll
        return job_id

    @property
    def worker_pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):  # a store outage: try again at the next poll
                if (self._child is None or self._child.poll() is not None) and self.waiting() and self._locked():
                    self._child = self._spawn()
            self._wake.wait(get_settings().batch_poll_seconds)
            self._wake.clear()

    def _locked(self) -> bool:
        if self._lock_handle is not None:
            return True
        from api.http.limits import runtime_dir

        handle = open(runtime_dir(self.engine.url.render_as_string(hide_password=False)) / "batch-worker.lock", "a+b")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_handle = handle
        return True

    def _spawn(self) -> subprocess.Popen:
        settings = get_settings()
        root = str(Path(__file__).resolve().parents[2])  # this checkout first, whatever the working directory
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]),
               # the URL (and any password in it) by the environment: a command line is visible to every user
               "INDEXLOAN_DATABASE_URL": self.engine.url.render_as_string(hide_password=False)}
        command = [sys.executable, "-m", "api.cli.main", "batch", "worker",
                   "--batch-dir", str(self.batch_dir.resolve()),
                   "--exit-when-idle", str(settings.batch_worker_idle_seconds), "--until-stdin-closes"]
        if self.models_dir:
            command += ["--models-dir", self.models_dir]
        log.info("starting a batch worker process")
        return subprocess.Popen(command, stdin=subprocess.PIPE, env=env, close_fds=True)

    def _stop_child(self, timeout: float) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(OSError):
            child.stdin.close()  # the worker puts its jobs back in the queue and exits
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
