"""Engine creation for the store (schema migrations: `api.database.migrate`, which sees every table).

Every engine is bounded (settings `database_*_timeout_seconds`): connecting, waiting for a pooled
connection, and each statement. On PostgreSQL the statement timeout is set on the server *and* enforced
by the client (`DeadlineConnection`): a server that stopped answering (its processes stopped, a network
that drops packets) no longer hangs a request or the quote writer; the connection is closed and the
error is an ordinary `OperationalError`. Statement parameters never appear in error messages or logs
(`hide_parameters`): they hold credit codes and government figures.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import math
import os
import sqlite3
import sys
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from features.settings import get_settings


class StoreUnavailableError(RuntimeError):
    """The database cannot be reached or opened; the message says which URL and why."""


class StoreNotWritableError(StoreUnavailableError):
    """The SQLite store's files cannot be written safely (immutable, or a read-only filesystem)."""


def store_errors(*, load_drivers: bool = False) -> tuple[type[BaseException], ...]:
    """Every database error on any path, the one definition: the driver's (wrapped by SQLAlchemy), a pool wait
    that timed out, a store that cannot be opened or written safely, and raw driver errors should any escape
    unwrapped. PostgreSQL's driver is counted once it is loaded: a process that never loaded it cannot raise
    its errors, and importing it costs a batch or CLI process 0.2 s. `load_drivers` loads it first (the HTTP
    service, which registers a handler per class at start-up)."""
    if load_drivers:
        with contextlib.suppress(ImportError):
            import psycopg  # noqa: F401 - loaded for its error classes
    found: list[type[BaseException]] = [sa.exc.DBAPIError, sa.exc.TimeoutError, sa.exc.DisconnectionError,
                                        StoreUnavailableError, sqlite3.Error]
    psycopg_module = sys.modules.get("psycopg")
    if psycopg_module is not None:
        found.append(psycopg_module.Error)
    return tuple(found)


def _sqlite_pragmas(wal: bool):  # type: ignore[no-untyped-def]
    def pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # 16 KiB pages (only takes effect when the file is created): a stored quote (~30 KB of JSON) spans
        # 2 overflow pages instead of 8; measured 0.29 vs 0.47 ms per insert + commit on this machine.
        cursor.execute("PRAGMA page_size=16384")
        if wal:
            # WAL lets the API read while a batch writes. synchronous=NORMAL in WAL: a commit is durable
            # against a crash of the process (not of the OS). Its index (-shm) is memory-mapped: see
            # sqlite_write_hazard.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        else:
            # A rollback journal: every read and write is a plain read()/write() that can fail with an
            # error; nothing is memory-mapped, so a full disk, a read-only or immutable file or filesystem
            # is an OperationalError (503), never a SIGBUS. synchronous=FULL: a commit survives an OS crash.
            # Leaving WAL needs the database to itself: when another connection has it open, this one stays
            # in WAL and a later connection switches (`indexloan serve` migrates alone, before its workers).
            with contextlib.suppress(Exception):
                cursor.execute("PRAGMA journal_mode=PERSIST")
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA mmap_size=0")  # no memory-mapped database I/O
        cursor.close()

    return pragmas


# ------------------------------------------------------------------ SQLite: never touch a file that would SIGBUS

_FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h, _IOR('f', 1, long)
_FS_IMMUTABLE_FL = 0x00000010
_FS_APPEND_FL = 0x00000020


def _flags(path: str) -> int:
    """The inode flags of `path` (chattr), 0 when the file is absent or the filesystem has none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        buf = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf, True)
        return buf[0]
    except OSError:
        return 0
    finally:
        os.close(fd)


def sqlite_write_hazard(database: str) -> str | None:
    """Why the SQLite store at `database` (in WAL mode) must not be opened for a transaction now, or None.

    In WAL mode every connection maps the `-shm` index file into memory and writes to it, readers too.
    When such a write cannot reach the file (the file made immutable, the filesystem remounted
    read-only), the kernel does not return an error: it kills the process with SIGBUS (reproduced with
    `chattr +i` on the three files). So before each transaction the files are checked, and a store that
    would fault is an error (503) instead; a change during a transaction can still fault, which is why
    WAL is not the default (settings.sqlite_wal).
    """
    try:
        if os.statvfs(Path(database).parent).f_flag & os.ST_RDONLY:
            return f"the filesystem holding {Path(database).name} is read-only"
    except OSError:
        return None  # not there yet: SQLite reports it
    for suffix in ("", "-wal", "-shm"):
        if _flags(database + suffix) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
            return f"{Path(database + suffix).name} is immutable or append-only (chattr)"
    return None


def _guard_sqlite(engine: sa.Engine, database: str) -> None:
    """Refuse each transaction while the store would fault, before SQLite touches it. The error leaves the
    connection open: closing the last connection checkpoints through the mapping (a SIGBUS too)."""

    def begin(_connection: sa.Connection) -> None:
        hazard = sqlite_write_hazard(database)
        if hazard is not None:
            raise StoreNotWritableError(f"the store cannot be written safely: {hazard}")

    sa.event.listen(engine, "begin", begin)


# ------------------------------------------------------------------ PostgreSQL: a deadline on every round trip


def _deadline_connection_class() -> type:
    import psycopg
    from psycopg import errors

    wait_timeout_error = getattr(errors, "_WaitTimeout", None)

    class DeadlineConnection(psycopg.Connection):  # type: ignore[type-arg]
        """A psycopg connection whose every wait for the server (query, commit, rollback, ping) ends after
        `deadline_seconds`: the connection is then closed (SQLAlchemy sees a disconnect and drops it)."""

        deadline_seconds: float = 30.0

        def wait(self, gen, interval=0.1, timeout=None):  # type: ignore[no-untyped-def, override]
            if wait_timeout_error is None:  # pragma: no cover - a psycopg without wait timeouts
                return super().wait(gen, interval)
            try:
                return super().wait(gen, interval, timeout if timeout is not None else self.deadline_seconds)
            except wait_timeout_error:
                with contextlib.suppress(Exception):
                    self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"the database did not answer within {self.deadline_seconds:g} s; connection closed") from None

    return DeadlineConnection


def _postgres_options(engine: sa.Engine, statement_timeout: float) -> None:
    deadline_class = _deadline_connection_class()
    # The client's deadline leaves the server time to cancel the statement itself first.
    deadline_class.deadline_seconds = statement_timeout + 2.0
    milliseconds = int(statement_timeout * 1000)

    def do_connect(_dialect, _record, cargs, cparams):  # type: ignore[no-untyped-def]
        return deadline_class.connect(*cargs, **cparams)

    def on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {milliseconds}")
            cursor.execute(f"SET lock_timeout = {milliseconds}")
            cursor.execute(f"SET idle_in_transaction_session_timeout = {max(milliseconds, 60_000)}")
        dbapi_connection.autocommit = autocommit

    sa.event.listen(engine, "do_connect", do_connect)
    sa.event.listen(engine, "connect", on_connect)


@cache
def connect(url: str | None = None) -> sa.Engine:
    """A SQLAlchemy engine for `url` (default: the configured one), creating the SQLite folder."""
    settings = get_settings()
    url = url or settings.resolved_database_url
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    on_file = backend == "sqlite" and parsed.database not in (None, "", ":memory:")
    if on_file:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"future": True, "hide_parameters": True,
                               "pool_timeout": settings.database_pool_timeout_seconds}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = settings.database_statement_timeout_seconds  # waiting for SQLite's lock
    else:
        options["pool_pre_ping"] = True
        if parsed.get_driver_name() == "psycopg":
            connect_args["connect_timeout"] = max(2, math.ceil(settings.database_connect_timeout_seconds))
            # a dead peer (no RST) is noticed by TCP too
            connect_args.update(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
    if connect_args:
        options["connect_args"] = connect_args
    engine = sa.create_engine(url, **options)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas(settings.sqlite_wal))
        if on_file and settings.sqlite_wal:
            _guard_sqlite(engine, str(parsed.database))
    elif parsed.get_driver_name() == "psycopg":
        _postgres_options(engine, settings.database_statement_timeout_seconds)
    return engine
