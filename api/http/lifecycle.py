"""Starting the service's parts so that a dependency that is down never takes the process down.

A worker starts even when the database is unreachable or no verified risk model can be loaded (a
tampered artifact, say): `/healthz` and `/metrics` answer at once, routes that need the missing part
answer 503 (Retry-After), and a background thread retries (after Retry-After seconds, doubling to 60 s)
until the parts are up,
then swaps them in: recovery without a restart. Before, the exception left the lifespan and uvicorn
stopped the worker (and with it, after a restart, the whole service).
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from api.http import errors, logs
from features.settings import get_settings
from products.catalogue import load_catalogue

MAX_RETRY_SECONDS = 60.0


class Unavailable:
    """Stands in for a part that could not be started: any use is a 503 problem naming why."""

    def __init__(self, part: str, error: BaseException, **known: Any) -> None:
        self._part = part
        self._error = error
        self.__dict__.update(known)

    @property
    def is_unavailable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self.problem()

    def problem(self) -> errors.ProblemError:
        if isinstance(self._error, errors.ArtifactIntegrityError):
            return errors.model_unavailable(self._error)
        if isinstance(self._error, errors.STORE_ERRORS):
            return errors.store_unavailable(self._error)
        _outage(self._part).failure(self._error)
        return errors.ProblemError(503, f"{self._part} is not available yet; retry later",
                                   headers=errors.retry_after())


_OUTAGES: dict[str, logs.OutageLog] = {}


def _outage(part: str) -> logs.OutageLog:
    """The rate-limited log of a part that failed for another reason than the store or the model."""
    return _OUTAGES.setdefault(part, logs.OutageLog(part))


def unavailable(part: Any) -> bool:
    return isinstance(part, Unavailable)


class Starter:
    """Brings up the schema, the quoting service and the batch runner of one app; retries what failed."""

    def __init__(self, app: FastAPI, engine: sa.Engine, models_dir: str | None) -> None:
        self.app = app
        self.engine = engine
        self.models_dir = models_dir
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._migrated = False

    def start(self) -> None:
        """One attempt now (what the lifespan waits for); if a part is missing, keep trying in the background."""
        if not self._attempt():
            self._thread = threading.Thread(target=self._retry, name="service-starter", daemon=True)
            self._thread.start()

    def _attempt(self) -> bool:
        from api.database import migrate
        from api.monitoring.shadow import ShadowScorer
        from api.precredit.jobs import JobRunner
        from api.quoting.service import QuotingService

        state = self.app.state
        try:
            if not self._migrated:
                migrate(self.engine.url.render_as_string(hide_password=False))
                self._migrated = True
            if unavailable(state.quoting):
                quoting = QuotingService(self.engine, self.models_dir)
                quoting.shadow = ShadowScorer(quoting, self.models_dir)  # challengers score live quotes
                state.quoting = quoting
                logs.STORE.success()
                logs.MODEL.success()
            if unavailable(state.batch_jobs):
                runner = JobRunner(self.engine, self.models_dir)  # batch runs: the app's worker thread
                runner.start()
                state.batch_jobs = runner
            for outage in _OUTAGES.values():
                outage.success()
            return True
        except Exception as error:  # noqa: BLE001 - any failure: the part stays unavailable, retried later
            if unavailable(state.quoting):
                state.quoting = Unavailable("the quoting service", error,
                                            definitions=list(load_catalogue().values()))
            if unavailable(state.batch_jobs):
                state.batch_jobs = Unavailable("the batch runner", error)
            if isinstance(error, errors.ArtifactIntegrityError):
                logs.MODEL.failure(error)
            elif isinstance(error, errors.STORE_ERRORS):
                logs.STORE.failure(error)
            else:
                _outage("the service's start").failure(error)
            return False

    def _retry(self) -> None:
        wait = float(get_settings().retry_after_seconds)
        while not self._stop.wait(wait):
            if self._attempt():
                logs.log.warning("all parts of the service are up")
                return
            wait = min(wait * 2, MAX_RETRY_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        state = self.app.state
        if not unavailable(state.batch_jobs):
            state.batch_jobs.stop()
        if not unavailable(state.quoting):
            state.quoting.writer.stop()
