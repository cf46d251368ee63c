"""The fault suite (issue 14): dependencies that go down, hang or refuse writes, workers that die, a tampered
model. Each test starts what it breaks (a throwaway PostgreSQL instance on its own loopback port, a SQLite
store in its own folder, `indexloan serve` as a subprocess), breaks it, and asserts: no 500, 503 with
Retry-After while broken, no acknowledged quote lost, recovery without a restart, a handful of log lines.
Loops are bounded in time and count, so the suite stays within a few minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.database import migrate
from api.http.app import create_app
from api.keys import Role, create_key
from api.tables import quotes
from features.ingest import ingest_directory
from features.synthetic import generate_region, write_region
from tests.conftest import settings_env
from tests.live_server import serve

INDEXLOAN = str(Path(sys.executable).parent / "indexloan")
FIRMS = 400
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ a throwaway PostgreSQL instance


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class ThrowawayPostgres:
    """initdb into a temporary directory, served on its own loopback port; stopped (and its files removed)
    by the test. As root the server runs as the `postgres` (or `nobody`) user: PostgreSQL refuses root."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        # not under pytest's root-only temporary tree: the server's user must reach its directory
        self.root = Path(tempfile.mkdtemp(prefix="indexloan-pg-"))
        self.data = self.root / "pgdata"
        self.port = _free_port()
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self.user = pwd.getpwnam(name)
                    break

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _demote(self) -> None:  # pragma: no cover - runs in the child
        if self.user is not None:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, timeout=timeout,
                              preexec_fn=self._demote, cwd="/")
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr.decode(errors='replace')[-2000:]}"

    def init(self) -> None:
        self.data.mkdir(parents=True)
        if self.user is not None:
            for path in (self.root, self.data):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off "
                   "-c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "server.log"), "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def pids(self) -> list[int]:
        """The postmaster and its children."""
        master = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                        children.append(int(entry))
        return [master, *children]

    def signal(self, sig: signal.Signals) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    pg = ThrowawayPostgres()
    if pg.bin is None:
        shutil.rmtree(pg.root, ignore_errors=True)
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.signal(signal.SIGCONT)  # never leave it stopped
        with contextlib.suppress(Exception):
            pg.stop("immediate")
        shutil.rmtree(pg.root, ignore_errors=True)


# ------------------------------------------------------------------ a populated store, load and log capture


def populate(url: str, directory: Path) -> tuple[str, list[str]]:
    """Migrate, ingest a small synthetic region, create a loan officer's key: (key, credit codes)."""
    region = directory / "region"
    write_region(generate_region(FIRMS, 5), region, "parquet")
    engine = migrate(url)
    report = ingest_directory(engine, region, directory / "quarantine")
    assert report.ok, report.as_json()
    key = create_key(engine, Role.loan_officer, "fault-test")
    with engine.connect() as conn:
        codes = conn.execute(sa.text("SELECT DISTINCT credit_code FROM src_registry ORDER BY credit_code")
                             ).scalars().all()
    return key, list(codes)


def _proper_503(r: httpx.Response) -> bool:
    return (r.status_code == 503 and "Retry-After" in r.headers
            and r.headers["content-type"].startswith("application/problem+json"))


@dataclass
class Load:
    """Quote requests from a few threads until stopped: every answer's status, and the ids acknowledged."""

    base: str
    key: str
    codes: list[str]
    threads: int = 6
    statuses: list[int] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    transport_errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        i = n
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                i += self.threads
                try:
                    r = client.post("/v1/quotes", json={"credit_code": self.codes[i % len(self.codes)]},
                                    headers=headers)
                except httpx.TransportError:
                    with self._lock:
                        self.transport_errors += 1
                    time.sleep(0.05)
                    continue
                with self._lock:
                    self.statuses.append(r.status_code)
                    if r.status_code == 201:
                        self.acknowledged.append(r.json()["quote_id"])
                    elif r.status_code >= 500 and not _proper_503(r):
                        self.problems.append(f"{r.status_code} {r.headers} {r.text[:200]}")
                if r.status_code == 503:
                    time.sleep(0.02)

    def __enter__(self) -> Load:
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(60)

    def count(self, status: int) -> int:
        with self._lock:
            return sum(1 for s in self.statuses if s == status)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.summary()}"
            time.sleep(0.05)

    def summary(self) -> dict[int, int]:
        with self._lock:
            return {s: self.statuses.count(s) for s in sorted(set(self.statuses))}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records)


@contextlib.contextmanager
def captured_logs() -> Iterator[Lines]:
    lines = Lines()
    loggers = [logging.getLogger(n) for n in ("indexloan", "uvicorn.error", "uvicorn", "api", "sqlalchemy")]
    for lg in loggers:
        lg.addHandler(lines)
    try:
        yield lines
    finally:
        for lg in loggers:
            lg.removeHandler(lines)


def stored_ids(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(quotes.c.quote_id)).scalars())
    finally:
        engine.dispose()


# ------------------------------------------------------------------ PostgreSQL stopped under load


def test_postgres_outage_under_load_gives_503s_then_recovers(postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    key, codes = populate(postgres.url, tmp_path)
    with (settings_env(retry_after_seconds="2", database_connect_timeout_seconds="2",
                       runtime_dir=str(tmp_path / "run")),
          serve(create_app(database_url=postgres.url)) as base, captured_logs() as logs):
        with Load(base, key, codes) as load:
            load.wait_for(lambda: load.count(201) >= 30, 60, "quotes before the outage")
            before = len(load.statuses)
            postgres.stop("fast")  # terminates every connection: the pool's are dead now
            stopped_at = time.monotonic()
            load.wait_for(lambda: load.count(503) >= 20, 30, "503s during the outage")
            time.sleep(max(0.0, 10.0 - (time.monotonic() - stopped_at)))  # stopped for 10 s under load
            during = load.summary()
            outage_lines = len(logs.records)
            postgres.start()
            recovered = load.count(201)
            load.wait_for(lambda: load.count(201) >= recovered + 30, 60, "quotes after the outage")
        print(f"outage: answers {load.summary()}, during the outage {during}, log lines {len(logs.records)}:\n"
              + logs.text())
        assert load.problems == [], load.problems[:5]
        assert set(load.summary()) <= {201, 503}, load.summary()  # only 503s while down: no 500, no 4xx
        assert load.transport_errors == 0  # every request got an answer (no connection closed on it)
        assert during.get(503, 0) >= 20 and len(load.statuses) > before
        # every acknowledged quote is stored
        assert set(load.acknowledged) <= stored_ids(postgres.url)
        text = logs.text()
        assert "Traceback" not in text and "Exception in ASGI application" not in text, text[:3000]
        # a handful of lines for thousands of failed requests: the outage, its end
        assert outage_lines <= 10, text
        assert any("available again" in r.getMessage() for r in logs.records), text


def test_hung_postgres_answers_503_within_the_timeout(postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    key, codes = populate(postgres.url, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    with (settings_env(request_timeout_seconds="2", database_statement_timeout_seconds="3",
                       database_connect_timeout_seconds="2", database_pool_timeout_seconds="2",
                       runtime_dir=str(tmp_path / "run")),
          serve(create_app(database_url=postgres.url)) as base,
          httpx.Client(base_url=base, timeout=30) as client):
        assert client.post("/v1/quotes", json={"credit_code": codes[0]}, headers=headers).status_code == 201
        postgres.signal(signal.SIGSTOP)  # every server process stopped: connections open, nothing answers
        try:
            results: list[tuple[int, float, dict]] = []

            def one(i: int) -> None:
                start = time.monotonic()
                with httpx.Client(base_url=base, timeout=30) as c:
                    r = c.post("/v1/quotes", json={"credit_code": codes[i]}, headers=headers)
                results.append((r.status_code, time.monotonic() - start, dict(r.headers)))

            threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 9)]
            for t in threads:
                t.start()
            health_start = time.monotonic()
            assert client.get("/healthz").status_code == 200
            assert time.monotonic() - health_start < 1.0
            assert client.get("/metrics").status_code == 200
            for t in threads:
                t.join(30)
            assert len(results) == 8
            for status, took, response_headers in results:
                assert status == 503 and "retry-after" in response_headers, results
                assert took < 2.0 + 1.5, results  # the configured timeout, and a margin for a busy machine
        finally:
            postgres.signal(signal.SIGCONT)
        # recovery without a restart
        deadline = time.monotonic() + 30
        while True:
            r = client.post("/v1/quotes", json={"credit_code": codes[20]}, headers=headers)
            if r.status_code == 201:
                break
            assert r.status_code == 503, r.text
            assert time.monotonic() < deadline, "no recovery after the database resumed"
            time.sleep(0.2)
        assert client.get("/readyz").status_code in (200, 503)
