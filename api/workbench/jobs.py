"""Simulations started over the API: a row in `simulation_jobs`, run by one worker thread of the process
that received it (never inside a request), progress written as it goes, the HTML report kept beside the
batch results (`<batch dir>/simulations/<job id>.html`). Any worker process answers a poll from the row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from api.workbench.tables import simulation_jobs
from features.store import audit

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.5


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SimulationRunner:
    """One queue and one daemon thread per process (started on the first submission)."""

    def __init__(self, engine: sa.Engine, models_dir: str | None, out_dir: Path) -> None:
        self.engine = engine
        self.models_dir = models_dir
        self.out_dir = out_dir
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, request: dict[str, Any], actor: str) -> str:
        """`request`: {"as_of": ISO date, "version_id": int} or {"as_of", "definition": {...}} (validated)."""
        job_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(simulation_jobs.insert().values(
                job_id=job_id, status="queued", requested_by=actor, created_at=_now(),
                request_json=json.dumps(request, ensure_ascii=False), rows_done=0))
            audit.append(conn, actor, "product.simulate.request", f"simulation:{job_id}",
                         {"as_of": request["as_of"], "version_id": request.get("version_id"),
                          "code": (request.get("definition") or {}).get("code")})
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="indexloan-simulations", daemon=True)
                self._thread.start()
        self._queue.put(job_id)
        return job_id

    def get(self, job_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(simulation_jobs).where(simulation_jobs.c.job_id == job_id)).first()

    def wait(self, job_id: str, timeout: float = 300.0) -> Any:
        """The job's row once it has finished (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while (row := self.get(job_id)) is not None and row.status in ("queued", "running"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return row

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            try:
                self._run(job_id)
            except Exception:  # noqa: BLE001 - the worker thread survives any one job
                log.exception("simulation %s failed unexpectedly", job_id)

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(simulation_jobs.update().where(simulation_jobs.c.job_id == job_id).values(**values))

    def _run(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            claimed = conn.execute(simulation_jobs.update().where(simulation_jobs.c.job_id == job_id,
                                                                  simulation_jobs.c.status == "queued")
                                   .values(status="running", started_at=_now())).rowcount
        row = self.get(job_id)
        if claimed != 1 or row is None:
            return
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_SECONDS or done == total:
                last[0] = now
                self._set(job_id, rows_done=done, rows_total=total)

        try:
            summary, path = self._execute(job_id, json.loads(row.request_json), progress)
        except Exception as error:  # noqa: BLE001 - recorded on the job, never a crashed worker
            log.exception("simulation %s failed", job_id)
            message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
            self._finish(job_id, row.requested_by, "failed", error=message)
            return
        self._finish(job_id, row.requested_by, "succeeded", summary_json=json.dumps(summary, ensure_ascii=False),
                     report_path=str(path))

    def _execute(self, job_id: str, request: dict[str, Any], progress: Any) -> tuple[dict[str, Any], Path]:
        from api.precredit.inputs import load_model
        from api.workbench.report import render
        from api.workbench.simulate import simulate
        from api.workbench.store import ProductVersions
        from features.settings import get_settings
        from features.store.load import load_features
        from products.catalogue import parse_definition

        as_of = dt.date.fromisoformat(request["as_of"])
        store = ProductVersions(self.engine)
        if request.get("version_id") is not None:
            draft = store.definition(int(request["version_id"]))
        else:
            draft = parse_definition(request["definition"])
        features = load_features(None, as_of, engine=self.engine)
        model = load_model(self.engine, self.models_dir, None)
        sim = simulate(features, draft, store.published()[1], as_of, model, get_settings().simulation_lgd, progress)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{job_id}.html"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(render(sim), encoding="utf-8")
        partial.replace(path)
        return sim.summary(), path

    def _finish(self, job_id: str, actor: str, status: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(simulation_jobs.update().where(simulation_jobs.c.job_id == job_id)
                         .values(status=status, finished_at=_now(), **values))
            audit.append(conn, actor, "product.simulate.finish", f"simulation:{job_id}",
                         {"status": status, "error": values.get("error")})
