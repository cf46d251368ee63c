"""The service's logs: redacted, and a dependency outage logged once, not once per request.

- `redact` masks what must never reach a log: API keys and bearer tokens, full unified social
  credit codes (the first 8 characters, the region, are kept) and any number written beside the name of a
  government data field (`api.visibility.redact_values`: the log audience reads no raw value).
  `RedactingFilter` applies it to every record of the handlers it is installed on (the service's own
  and uvicorn's), traceback text included.
  Statement parameters (credit codes, government figures) are already kept out of database errors by
  the engines (`hide_parameters`, features/store/db.py).
- `OutageLog`: the first failure of a dependency (the store, the risk model) is logged with its cause;
  while the outage lasts, at most one line per `interval` seconds says how many requests it failed;
  its end is logged once, with the count and the duration.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time

from api.visibility import redact_values

log = logging.getLogger("indexloan")

_USCC = re.compile(r"(?<![0-9A-Z])([0-9A-HJ-NP-RTUWXY]{2}[0-9]{6})[0-9A-HJ-NP-RTUWXY]{8}([0-9A-HJ-NP-RTUWXY]{2})"
                   r"(?![0-9A-Z])")
_KEY = re.compile(r"ilk_[A-Za-z0-9_\-]{6,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def redact(text: str) -> str:
    text = redact_values(text)  # the one output filter: no raw government value in a log line
    text = _KEY.sub("ilk_[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    return _USCC.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is logged as it is
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_configured = False
PACKAGES = ("api", "features", "products", "scoring", "training")  # the project's top-level packages


def configure() -> None:
    """The service's logger writes to stderr; its handlers and uvicorn's redact (idempotent)."""
    global _configured
    if _configured:
        return
    _configured = True
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    # The project's modules log under their own names (`api.quoting.service`, `training.families`, ...): into the
    # service's handlers too (whoever set them up). Without a handler of their own, their warnings reached Python's
    # last-resort handler unredacted and their INFO lines nowhere. They still propagate (a test's or host's root
    # handler sees them, already redacted by this handler's filter, which runs first).
    for package in map(logging.getLogger, PACKAGES):
        for handler in log.handlers:
            if handler not in package.handlers:
                package.addHandler(handler)
        if package.level == logging.NOTSET:
            package.setLevel(logging.INFO)
    for name in ("indexloan", *PACKAGES, "uvicorn", "uvicorn.error", "uvicorn.access", ""):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def describe(error: BaseException) -> str:
    """A one-line cause for a log: the exception class and the first line of the driver's message (later
    lines of a driver message can quote row values)."""
    cause = getattr(error, "orig", None) or error
    first = (str(cause).strip().splitlines() or [""])[0][:300]
    return redact(f"{type(cause).__name__}: {first}" if first else type(cause).__name__)


class OutageLog:
    """Rate-limited logging of one dependency's failures (thread-safe; one per process and dependency)."""

    def __init__(self, dependency: str, interval: float = 60.0) -> None:
        self.dependency = dependency
        self.interval = interval
        self._lock = threading.Lock()
        self._since: float | None = None  # when the outage began (monotonic)
        self._failures = 0
        self._logged_at = 0.0
        self._unlogged = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failure(self, error: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._since is None:
                self._since, self._logged_at, self._unlogged = now, now, 0
                log.error("%s unavailable: %s; answering 503 until it recovers", self.dependency, describe(error))
                return
            self._unlogged += 1
            if now - self._logged_at < self.interval:
                return
            count, self._unlogged, self._logged_at = self._unlogged, 0, now
        log.error("%s still unavailable after %.0f s: %d more requests answered 503 (last cause %s)",
                  self.dependency, now - self._since, count, describe(error))

    def success(self) -> None:
        if self._since is None:  # the common case: no lock
            return
        with self._lock:
            if self._since is None:
                return
            duration, failures = time.monotonic() - self._since, self._failures
            self._since, self._failures, self._unlogged = None, 0, 0
        log.warning("%s available again after %.1f s (%d requests answered 503)", self.dependency, duration, failures)


STORE = OutageLog("the store (database)")
MODEL = OutageLog("the risk model")
