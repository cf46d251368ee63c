"""Batch jobs started over the API: recorded in `batch_jobs`, run one at a time by a worker thread the
app owns (never inside a request), audited when requested, finished and downloaded.

A job's partition files live in `<batch dir>/<job id>.parts`, so a job cut short by a restart is put
back in the queue at the next start and resumes from its finished partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from api.precredit.run import BatchInputError, Progress, RunOptions, RunResult, run_precredit
from api.tables import batch_jobs
from features.store import audit

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.5


class JobInterrupted(Exception):
    """The service is stopping: the job goes back to the queue and resumes at the next start."""


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


def default_batch_dir() -> Path:
    from features.settings import get_settings

    return get_settings().resolved_batch_dir


class JobRunner:
    """The app's batch worker: a queue and one thread. `start()` in the app's lifespan, `stop()` after."""

    def __init__(self, engine: sa.Engine, models_dir: str | None = None, batch_dir: Path | None = None) -> None:
        self.engine = engine
        self.models_dir = models_dir
        self.batch_dir = batch_dir or default_batch_dir()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        with self.engine.begin() as conn:  # cut short by a restart: back in the queue, resumes by partition
            conn.execute(batch_jobs.update().where(batch_jobs.c.status == "running").values(status="queued"))
            pending = conn.execute(sa.select(batch_jobs.c.job_id).where(batch_jobs.c.status == "queued")
                                   .order_by(batch_jobs.c.created_at)).scalars().all()
        for job_id in pending:
            self._queue.put(job_id)
        self._thread = threading.Thread(target=self._loop, name="indexloan-batch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ requests

    def submit(self, request: PrecreditRequest, key_id: int, actor: str) -> str:
        job_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(batch_jobs.insert().values(
                job_id=job_id, kind="precredit", status="queued", api_key_id=key_id, requested_by=actor,
                created_at=_now(), request_json=json.dumps(request.to_json()), partitions_done=0))
            audit.append(conn, actor, "batch.precredit.request", f"batch:{job_id}", request.to_json())
        self._queue.put(job_id)
        return job_id

    def get(self, job_id: str) -> sa.Row | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(batch_jobs).where(batch_jobs.c.job_id == job_id)).first()

    def result_path(self, job_id: str, fmt: str) -> Path:
        return self.batch_dir / f"{job_id}.{fmt}"

    # ------------------------------------------------------------------ the worker

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run(job_id)
            except JobInterrupted:
                with self.engine.begin() as conn:
                    conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == job_id).values(status="queued"))
                return
            except Exception:  # noqa: BLE001 - the worker thread must survive any one job
                log.exception("batch job %s failed unexpectedly", job_id)

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == job_id).values(**values))

    def _run(self, job_id: str) -> None:
        # claim the job atomically: with several service processes, only one runs it
        with self.engine.begin() as conn:
            claimed = conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == job_id,
                                                             batch_jobs.c.status == "queued")
                                   .values(status="running", started_at=_now(), error=None)).rowcount
        row = self.get(job_id)
        if claimed != 1 or row is None:
            return
        request = PrecreditRequest.from_json(json.loads(row.request_json))
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self._stopping.is_set():
                raise JobInterrupted
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_SECONDS or done == total:
                last[0] = now
                self._set(job_id, partitions_done=done, partitions_total=total)

        try:
            result = self._execute(job_id, request, progress)
        except JobInterrupted:
            raise
        except BatchInputError as error:
            self._finish(job_id, row.requested_by, "failed", error=str(error))
            return
        except Exception as error:  # noqa: BLE001 - recorded on the job, never a crashed worker
            log.exception("batch job %s failed", job_id)
            self._finish(job_id, row.requested_by, "failed", error=f"unexpected failure ({type(error).__name__}): "
                                                                   f"{error}")
            return
        output = result.summary["output"]
        self._finish(job_id, row.requested_by, "succeeded", result_path=str(result.out), result_sha256=output["sha256"],
                     result_rows=output["rows"], summary_json=json.dumps(result.summary, ensure_ascii=False))

    def _execute(self, job_id: str, request: PrecreditRequest, progress: Progress) -> RunResult:
        from api.precredit.inputs import build_context, load_model
        from api.workbench.store import ProductVersions
        from features.store.load import load_features

        features = load_features(None, request.as_of, engine=self.engine)
        model = load_model(self.engine, self.models_dir, None)
        known = ProductVersions(self.engine).published()[1]  # seeds + the versions approved in the store
        ctx, describe, features = build_context(features, request.as_of, request.products, request.reasons, model,
                                                known)
        options = RunOptions(self.result_path(job_id, request.fmt), request.engine, None, request.partitions,
                             work_dir=self.batch_dir / f"{job_id}.parts")
        return run_precredit(ctx, features, describe, options, progress)

    def _finish(self, job_id: str, actor: str, status: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == job_id)
                         .values(status=status, finished_at=_now(), **values))
            detail = {"status": status, **{k: values[k] for k in ("result_sha256", "result_rows", "error")
                                           if k in values}}
            audit.append(conn, actor, "batch.precredit.finish", f"batch:{job_id}", detail)
