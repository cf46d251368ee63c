"""Monitoring reports for the HTTP service, computed in the background: a whole region's report takes longer
than a request may (settings.request_timeout_seconds), so GET /v1/monitoring answers 202 (Retry-After) while
a report is computed and 200 with the latest report of the same samples afterwards, recomputed in the
background once older than `settings.monitoring_report_seconds`. One computation per samples at a time."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from api.monitoring import gauges
from api.monitoring.config import load_thresholds
from api.monitoring.report import build_report
from api.monitoring.samples import parse_spec
from features.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    report: dict[str, Any] | None = None
    error: BaseException | None = None
    computed_at: float = -float("inf")
    running: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReportCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, dt.date], _Entry] = {}
        self._lock = threading.Lock()

    def get(self, quoter: Any, reference: str, current: str) -> dict[str, Any] | None:
        """The latest report of these samples (None: being computed). A malformed option raises SampleError at
        once; an error found while computing (say, no product in force on a date) is raised on the next call."""
        today = dt.date.today()
        parse_spec(reference, "reference", today)
        parse_spec(current, "current", today)
        load_thresholds()  # an unreadable thresholds file is reported now
        with self._lock:
            entry = self._entries.setdefault((reference, current, today), _Entry())
        with entry.lock:
            if entry.error is not None:
                error, entry.error = entry.error, None
                raise error
            stale = time.monotonic() - entry.computed_at > get_settings().monitoring_report_seconds
            if stale and not entry.running:
                entry.running = True
                threading.Thread(target=self._compute, args=(entry, quoter, reference, current),
                                 name="monitoring-report", daemon=True).start()
            return entry.report

    @staticmethod
    def _compute(entry: _Entry, quoter: Any, reference: str, current: str) -> None:
        try:
            report = build_report(quoter, reference, current, load_thresholds())
            report["computed_at"] = dt.datetime.now(dt.UTC).isoformat()
            gauges.publish(report)
            with entry.lock:
                entry.report, entry.computed_at = report, time.monotonic()
        except Exception as error:  # noqa: BLE001 - handed to the next request (a 422 or a 503)
            log.warning("monitoring report %s / %s failed: %s", reference, current, error)
            with entry.lock:
                entry.error = error
        finally:
            with entry.lock:
                entry.running = False
