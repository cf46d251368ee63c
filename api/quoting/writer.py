"""Group commit for issued quotes: one writer thread per process commits the quotes of concurrent
requests together, each quote with its audit row, and only then are their responses sent.

Many request threads each opening a write transaction make SQLite writers queue on its file lock
(its busy handler sleeps 1-100 ms between tries: second-long tails at 32 connections) and pay one
commit each. Here a transaction holds up to `MAX_GROUP` quotes. When a group fails, nothing of it
was written, and what happens next depends on why:

- a data error of one row (an idempotency clash, a value the column refuses): the group is retried
  one quote per transaction, so each request gets its own outcome;
- anything else (the database unreachable, hung past its timeout, full, read-only): every quote of
  the group fails at once with that error (503 for each waiting request). Retrying them one by one
  would make each wait out the timeout again while the database hangs.

A quote whose request has given up waiting (its deadline passed: the caller already got a 503) is
dropped before the writer starts writing it, so it is never stored unacknowledged. A group already
being written when a deadline passes can still commit; see docs/security.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import sqlalchemy as sa

from features.store.db import StoreUnavailableError

MAX_GROUP = 64
# A quote is dropped when its waiter's deadline is this close: a commit started later could end after it.
GIVE_UP_MARGIN_SECONDS = 0.25
# Errors caused by one row's values: worth retrying the rows of a failed group one by one.
ROW_ERRORS: tuple[type[BaseException], ...] = (sa.exc.IntegrityError, sa.exc.DataError)

Write = Callable[[sa.Connection], None]  # the statements of one quote, run inside the group's transaction


class WaiterGaveUpError(StoreUnavailableError):
    """The request stopped waiting (its deadline passed: the store was too slow) before its quote was
    written: nothing was stored. A store error, so the request's answer is the store's 503."""


@dataclass(frozen=True)
class _Entry:
    write: Write
    future: Future[None]
    give_up_at: float | None  # time.monotonic() after which nobody waits for the outcome


class GroupWriter:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        url = engine.url
        on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        self._lock_path = f"{url.database}.writer-lock" if on_file else None

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """On a SQLite file, the writers of several worker processes take turns through a file lock: the
        kernel wakes the next one as soon as the lock is free, where SQLite's busy handler would poll
        with sleeps of up to 100 ms (p99 over a second at 2 workers x 32 connections). A lock that cannot be
        taken (a read-only or vanished directory) is the store being unavailable."""
        if self._lock_path is None:
            yield
            return
        try:
            handle = open(self._lock_path, "a+b")  # noqa: SIM115 - closed by the with below
        except OSError as error:
            raise StoreUnavailableError(f"the store's write lock cannot be opened: {error.strerror}") from error
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError as error:
                raise StoreUnavailableError(f"the store's write lock cannot be taken: {error.strerror}") from error
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def submit(self, write: Write, give_up_at: float | None = None) -> Future[None]:
        """Queue one quote's writes; the future completes once they are committed (or failed). `give_up_at`
        (time.monotonic()): the waiter's deadline; an entry still queued then is dropped, never written."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="quote-writer", daemon=True)
                    self._thread.start()
        future: Future[None] = Future()
        self._queue.put(_Entry(write, future, give_up_at))
        return future

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            try:
                # The group is closed only once this process holds the store: quotes queued while the writers of
                # the other worker processes commit join this commit instead of waiting for the next one.
                with self._turn():
                    self._take_queued(group)
                    live = self._still_awaited(group)
                    if live:
                        self._commit(live)
            except StoreUnavailableError as error:  # the turn could not be taken: nothing of the group was written
                for entry in group:
                    if not entry.future.done():
                        entry.future.set_exception(error)

    def _take_queued(self, group: list[_Entry]) -> None:
        """Add what is queued now to `group`, up to MAX_GROUP; a stop request stays queued for after it."""
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put(None)
                return
            group.append(item)

    @staticmethod
    def _still_awaited(group: list[_Entry]) -> list[_Entry]:
        """The entries someone still waits for; the others fail with WaiterGaveUpError, unwritten."""
        now = time.monotonic()
        live = []
        for entry in group:
            if entry.future.cancelled():
                continue
            if entry.give_up_at is not None and now >= entry.give_up_at - GIVE_UP_MARGIN_SECONDS:
                entry.future.set_exception(WaiterGaveUpError("the request's deadline passed before its quote "
                                                             "was written; nothing was stored"))
                continue
            live.append(entry)
        return live

    def _commit(self, group: list[_Entry]) -> None:
        """Commit a group in one transaction (the caller holds the store's turn)."""
        try:
            with self.engine.begin() as conn:
                # neighbouring writes of one kind that can run together (`together(conn, writes)`, e.g. quotes:
                # one INSERT per table for the lot) do; any other write runs alone
                for together, entries in itertools.groupby(group, key=lambda e: getattr(e.write, "together", None)):
                    if together is None:
                        for entry in entries:
                            entry.write(conn)
                    else:
                        together(conn, [entry.write for entry in entries])
        except Exception as error:  # noqa: BLE001 - handed to the waiting requests
            if len(group) == 1 or not isinstance(error, ROW_ERRORS):
                for entry in group:  # the database itself failed: every quote of the group at once
                    entry.future.set_exception(error)
                return
            for entry in self._still_awaited(group):  # nothing of the group was written: one quote each
                self._commit([entry])
            return
        for entry in group:
            entry.future.set_result(None)
