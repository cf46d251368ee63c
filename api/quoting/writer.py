"""Group commit for issued quotes: one writer thread per process commits the quotes of concurrent
requests together, each quote with its audit row, and only then are their responses sent.

Many request threads each opening a write transaction make SQLite writers queue on its file lock
(its busy handler sleeps 1-100 ms between tries: second-long tails at 32 connections) and pay one
commit each. Here a transaction holds up to `MAX_GROUP` quotes; a failed group leaves nothing
written and is retried one quote per transaction, so each request gets its own outcome (an
idempotency clash for one request does not fail the others).
"""

from __future__ import annotations

import contextlib
import fcntl
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import sqlalchemy as sa

MAX_GROUP = 64

Write = Callable[[sa.Connection], None]  # the statements of one quote, run inside the group's transaction


class GroupWriter:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[tuple[Write, Future[None]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        url = engine.url
        on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        self._lock_path = f"{url.database}.writer-lock" if on_file else None

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """On a SQLite file, the writers of several worker processes take turns through a file lock: the
        kernel wakes the next one as soon as the lock is free, where SQLite's busy handler would poll
        with sleeps of up to 100 ms (p99 over a second at 2 workers x 32 connections)."""
        if self._lock_path is None:
            yield
            return
        with open(self._lock_path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def submit(self, write: Write) -> Future[None]:
        """Queue one quote's writes; the future completes once they are committed (or failed)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="quote-writer", daemon=True)
                    self._thread.start()
        future: Future[None] = Future()
        self._queue.put((write, future))
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
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(item)
            self._commit(group)

    def _commit(self, group: list[tuple[Write, Future[None]]]) -> None:
        try:
            with self._turn(), self.engine.begin() as conn:
                for write, _ in group:
                    write(conn)
        except Exception as error:  # noqa: BLE001 - handed to the waiting requests
            if len(group) == 1:
                group[0][1].set_exception(error)
                return
            for item in group:  # nothing of the group was written: one transaction per quote
                self._commit([item])
            return
        for _, future in group:
            future.set_result(None)
