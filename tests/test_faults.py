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
import select
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
from tests.live_server import Served, free_port, serve
from tests.live_server import served as serve_subprocess

INDEXLOAN = str(Path(sys.executable).parent / "indexloan")
FIRMS = 400
pytestmark = pytest.mark.slow


# The load of these tests comes from one key and one address, and 503s come back fast: per-caller rate limits
# would answer 429 and hide what a test looks at (test_a_flood_of_guessed_keys... and tests/test_security.py
# test the limits themselves).
UNLIMITED = {f"rate_limit_{who}_{what}": "1000000" for who in ("key", "address") for what in ("per_second", "burst")}

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
        self.port = free_port()
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
        """Signal the postmaster first (a stopped postmaster forks no new backend), then its children, scanning
        again until no child appears that was not signalled: a backend forked for a new connection while /proc
        was being read would otherwise be missed, and go on serving a "stopped" database."""
        signalled: set[int] = set()
        while True:
            pending = [pid for pid in self.pids() if pid not in signalled]
            if not pending:
                return
            for pid in pending:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                signalled.add(pid)


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


def populate(url: str, directory: Path, firms: int = FIRMS) -> tuple[str, list[str]]:
    """Migrate, ingest a small synthetic region, create a loan officer's key: (key, credit codes)."""
    region = directory / "region"
    write_region(generate_region(firms, 5), region, "parquet")
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
                       runtime_dir=str(tmp_path / "run"), **UNLIMITED),
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


def test_postgres_outage_under_load_on_two_worker_processes(postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    """The same outage against `indexloan serve --workers 2`: each worker logs the outage's start and end."""
    key, codes = populate(postgres.url, tmp_path)
    with served(postgres.url, tmp_path, database_connect_timeout_seconds="2") as server:
        with Load(server.base, key, codes) as load:
            load.wait_for(lambda: load.count(201) >= 30, 60, "quotes before the outage")
            logged_before = len(server.output())
            postgres.stop("fast")
            time.sleep(10.0)  # stopped for 10 s under load
            during = load.summary()
            postgres.start()
            recovered = load.count(201)
            load.wait_for(lambda: load.count(201) >= recovered + 30, 60, "quotes after the outage")
        lines = [line for line in server.output()[logged_before:].splitlines() if line.strip()]
        print(f"two workers: answers {load.summary()}, during the outage {during}, log lines {len(lines)}:\n"
              + "\n".join(lines))
        assert load.problems == [] and set(load.summary()) <= {201, 503}, (load.summary(), load.problems[:3])
        assert load.transport_errors == 0 and during.get(503, 0) >= 20
        assert set(load.acknowledged) <= stored_ids(postgres.url)
        assert not [line for line in lines if "Traceback" in line or "Exception in ASGI" in line], lines
        assert len(lines) <= 2 * 4, lines  # per worker: the outage, perhaps a reminder, its end
        assert server.workers() and server.proc.poll() is None


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


# ------------------------------------------------------------------ `indexloan serve --workers N` as a subprocess


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def served(url: str, directory: Path, workers: int = 2, **settings: str) -> Iterator[Served]:
    """The service on `url`, without per-caller rate limits, telling clients to retry after a second."""
    with serve_subprocess(directory, workers, database_url=url, retry_after_seconds="1",
                          **{**UNLIMITED, **settings}) as server:
        yield server


@dataclass
class ModelStore:
    url: str
    directory: Path
    key: str
    admin_key: str
    codes: list[str]


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A SQLite store with a synthetic region and a promoted champion model (artifacts in its folder)."""
    from tests.live_server import champion_in

    directory = tmp_path_factory.mktemp("faults-served")
    url = f"sqlite:///{directory / 'store.db'}"
    key, codes = populate(url, directory, firms=1200)
    engine = migrate(url)
    champion_in(directory / "models")(engine)
    admin = create_key(engine, Role.admin, "fault-admin")
    return ModelStore(url, directory, key, admin, codes)


def _quote(base: str, key: str, code: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/quotes", json={"credit_code": code}, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)


def test_kill_9_of_a_worker_under_load_loses_no_acknowledged_quote(model_store: ModelStore) -> None:
    with served(model_store.url, model_store.directory) as server:
        before = set(server.workers())
        with Load(server.base, model_store.key, model_store.codes) as load:
            load.wait_for(lambda: load.count(201) >= 40, 90, "quotes before the kill")
            victim = sorted(before)[0]
            os.kill(victim, signal.SIGKILL)
            killed_at = load.count(201)
            server.wait_workers(2, not_in={victim})  # uvicorn's supervisor starts a new one
            load.wait_for(lambda: load.count(201) >= killed_at + 40, 90, "quotes after the kill")
        assert load.problems == [] and set(load.summary()) == {201}, load.summary()  # zero 5xx
        assert load.transport_errors <= load.threads  # only the killed connections
        assert set(load.acknowledged) <= stored_ids(model_store.url)  # zero acknowledged quotes lost
        assert f"Child process [{victim}] died" in server.output()  # the death is logged


def test_tampered_artifact_and_worker_restart_keep_the_service_up(model_store: ModelStore) -> None:
    from training.registry import Registry

    engine = migrate(model_store.url)
    registry = Registry(engine, model_store.directory / "models")
    record = registry.champion()
    artifact = next(registry.artifact_dir(record) / name for name in sorted(record.digests)
                    if not name.endswith((".html", ".json")))
    original = artifact.read_bytes()
    with served(model_store.url, model_store.directory) as server:
        assert _quote(server.base, model_store.key, model_store.codes[0]).status_code == 201
        try:
            artifact.write_bytes(original + b"tampered")
            workers = server.workers()
            for pid in workers:  # every worker restarts after the tampering (and loads the model afresh)
                os.kill(pid, signal.SIGKILL)
            server.wait_workers(2, not_in=set(workers))
            for i in range(6):
                r = _quote(server.base, model_store.key, model_store.codes[i])
                assert r.status_code == 503, r.text
                assert r.headers["Retry-After"] and r.json()["title"] == "Risk model unavailable"
                assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
            assert httpx.get(f"{server.base}/metrics", timeout=5).status_code == 200
            assert httpx.get(f"{server.base}/readyz", timeout=10).status_code == 503
        finally:
            artifact.write_bytes(original)
        # the artifact restored: the workers recover on their own (the starter retries), no restart
        deadline = time.monotonic() + 60
        while (status := _quote(server.base, model_store.key, model_store.codes[7]).status_code) != 201:
            assert status == 503 and time.monotonic() < deadline, status
            time.sleep(0.5)
        assert workers and set(server.workers()).isdisjoint(workers) and server.proc.poll() is None
        text = server.output()
        assert "Traceback" not in text, text[-3000:]
        assert text.count("risk model unavailable") <= 2 * 4  # per worker: the outage, at most a few reminders


def test_read_only_store_file_under_load_gives_503s_not_a_crash(model_store: ModelStore) -> None:
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("making the store file immutable needs root and chattr")
    database = Path(model_store.url.removeprefix("sqlite:///"))
    probe = database.parent / "chattr-probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        probe.unlink()
        pytest.skip("this filesystem has no immutable flag")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    probe.unlink()
    files = [str(database)] + [str(p) for p in (database.parent.glob(database.name + "-*"))]
    with served(model_store.url, model_store.directory) as server:
        workers = server.workers()
        with Load(server.base, model_store.key, model_store.codes) as load:
            load.wait_for(lambda: load.count(201) >= 30, 90, "quotes before")
            try:
                subprocess.run(["chattr", "+i", *files], check=True)
                load.wait_for(lambda: load.count(503) >= 20, 30, "503s while read-only")
                ready = httpx.get(f"{server.base}/readyz", timeout=10)
                assert ready.status_code == 503, ready.text
                assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
            finally:
                subprocess.run(["chattr", "-i", *files], check=True)
            recovered = load.count(201)
            load.wait_for(lambda: load.count(201) >= recovered + 30, 60, "quotes after")
        assert server.workers() == workers and server.proc.poll() is None  # no worker died (no SIGBUS)
        assert load.problems == [] and set(load.summary()) <= {201, 503}, load.summary()
        assert set(load.acknowledged) <= stored_ids(model_store.url)
        deadline = time.monotonic() + 30  # ready again once each worker's probe has seen a write succeed
        while httpx.get(f"{server.base}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "still not ready 30 s after the store was writable again"
            time.sleep(0.5)
        text = server.output()
        assert "Traceback" not in text and "SIGBUS" not in text, text[-3000:]


def test_a_400_mb_chunked_body_is_refused_after_64_kb_without_memory_growth(model_store: ModelStore) -> None:
    with served(model_store.url, model_store.directory, workers=1) as server:
        pid = server.proc.pid  # one worker: uvicorn serves in this process
        host, port = server.base.removeprefix("http://").split(":")
        for key in (model_store.key, "ilk_not-a-key"):  # with or without a valid key
            rss_before = _rss_kb(pid)
            sent = 0
            chunk = b"10000\r\n" + b"7" * 0x10000 + b"\r\n"  # 64 KiB per chunk
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(f"POST /v1/quotes HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                             f"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
                sock.setblocking(False)
                answer = b""
                while sent < 400 << 20:
                    readable, writable, _ = select.select([sock], [sock], [], 5)
                    if readable:
                        with contextlib.suppress(BlockingIOError):
                            answer = sock.recv(65536)
                        break
                    if writable:
                        try:
                            sent += sock.send(chunk)
                        except (BrokenPipeError, ConnectionResetError):
                            break
                sock.setblocking(True)
                if not answer:
                    with contextlib.suppress(OSError):
                        answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert sent < 32 << 20, sent  # refused long before 400 MB (what was sent sat in socket buffers)
            growth = _rss_kb(pid) - rss_before
            assert growth < 16_000, f"worker grew {growth} kB"
        assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200


def test_a_flood_of_guessed_keys_gets_429s_shared_by_the_workers(model_store: ModelStore) -> None:
    with served(model_store.url, model_store.directory, runtime_dir=str(model_store.directory / "run-flood")) as server:
        statuses = []
        start = time.monotonic()
        for i in range(1000):  # a new connection each: the kernel spreads them over both workers
            r = httpx.get(f"{server.base}/v1/products", headers={"Authorization": f"Bearer ilk_guess{i:08d}"},
                          timeout=10)
            statuses.append(r.status_code)
        counts = {s: statuses.count(s) for s in set(statuses)}
        # one budget for both workers: a burst of 20 failures, then 10 a minute
        budget = 20 + int((time.monotonic() - start) * 10 / 60) + 1
        assert set(counts) == {401, 429} and counts[401] <= budget, (counts, budget)
        assert counts[429] >= 1000 - budget, counts
        assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200


def test_cli_revocation_is_effective_at_once_in_every_worker(model_store: ModelStore) -> None:
    engine = migrate(model_store.url)
    key = create_key(engine, Role.platform, "revoked-by-cli")
    with engine.connect() as conn:
        key_id = conn.execute(sa.text("SELECT id FROM api_keys WHERE name = 'revoked-by-cli'")).scalar_one()
    headers = {"Authorization": f"Bearer {key}"}
    runtime = str(model_store.directory / "run-revoke")
    with served(model_store.url, model_store.directory, runtime_dir=runtime) as server:
        for _ in range(40):  # cached by both workers
            with httpx.Client(base_url=server.base, timeout=10) as client:
                assert client.get("/v1/products", headers=headers).status_code == 200
        served_by = len(server.workers())
        done = subprocess.run([INDEXLOAN, "keys", "revoke", str(key_id), "--reason", "fault test", "--database-url",
                               model_store.url], capture_output=True, text=True, timeout=60,
                              env={**{k: v for k, v in os.environ.items() if not k.startswith("INDEXLOAN_")},
                                   "INDEXLOAN_RUNTIME_DIR": runtime})
        assert done.returncode == 0, done.stderr
        statuses = []
        for _ in range(16):  # new connections: both workers answer
            with httpx.Client(base_url=server.base, timeout=10) as client:
                statuses.append(client.get("/v1/products", headers=headers).status_code)
        assert served_by == 2 and statuses == [401] * 16, statuses


def test_full_disk_under_load_gives_503s_logged_and_not_ready_then_recovers(tmp_path: Path) -> None:
    """The store on a small tmpfs filled up: quotes 503 (logged once per worker), /readyz not ready, and the
    service recovers when space is freed."""
    mount = Path(tempfile.mkdtemp(prefix="indexloan-fulldisk-"))
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        mount.rmdir()
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        url = f"sqlite:///{mount / 'store.db'}"
        key, codes = populate(url, tmp_path)
        with served(url, tmp_path) as server:
            with Load(server.base, key, codes) as load:
                load.wait_for(lambda: load.count(201) >= 30, 90, "quotes before")
                logged_before = len(server.output())
                filler = mount / "filler"
                # unbuffered, and the error suppressed around the file too: a buffered writer keeps the part a
                # full disk refused and raises ENOSPC again when it is closed
                with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
                    while True:
                        out.write(b"\0" * (1 << 20))
                load.wait_for(lambda: load.count(503) >= 20, 60, "503s on a full disk")
                ready = httpx.get(f"{server.base}/readyz", timeout=10)
                assert ready.status_code == 503, ready.text
                assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
                filler.unlink()
                recovered = load.count(201)
                load.wait_for(lambda: load.count(201) >= recovered + 30, 60, "quotes after space was freed")
            lines = [line for line in server.output()[logged_before:].splitlines() if line.strip()]
            assert load.problems == [] and set(load.summary()) <= {201, 503}, load.summary()
            assert set(load.acknowledged) <= stored_ids(url)
            assert any("unavailable" in line and "full" in line for line in lines), lines  # the failure is logged
            assert len(lines) <= 2 * 4 and not [line for line in lines if "Traceback" in line], lines
            assert server.proc.poll() is None
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        with contextlib.suppress(OSError):
            mount.rmdir()


WAL_PROBE = """
import subprocess, sys
import sqlalchemy as sa
from features.store.db import StoreNotWritableError, connect
database = sys.argv[1]
engine = connect("sqlite:///" + database)
with engine.begin() as conn:
    conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
for _ in range(20):
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (?)", (b"x" * 20000,))
mode = engine.connect().exec_driver_sql("PRAGMA journal_mode").scalar()
assert mode == "wal", mode
with engine.connect() as a, engine.connect() as b:  # two pooled connections, both mapping the -shm index
    pass
files = [database, database + "-wal", database + "-shm"]
subprocess.run(["chattr", "+i", *files], check=True)
refused = 0
try:
    for _ in range(50):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (?)", (b"y" * 20000,))
        except StoreNotWritableError:
            refused += 1
finally:
    subprocess.run(["chattr", "-i", *files], check=True)
with engine.begin() as conn:
    conn.exec_driver_sql("INSERT INTO t VALUES (?)", (b"z" * 20000,))
print(refused)
"""


def test_wal_store_made_immutable_is_refused_before_sqlite_touches_it(tmp_path: Path) -> None:
    """With settings.sqlite_wal, a store whose files became immutable is refused before each transaction (an
    error, 503) instead of a SIGBUS through the memory-mapped -shm index; run in a child, which would die."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("making the store file immutable needs root and chattr")
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INDEXLOAN_")}, "INDEXLOAN_SQLITE_WAL": "true"}
    done = subprocess.run([sys.executable, "-c", WAL_PROBE, str(tmp_path / "wal.db")], capture_output=True,
                          text=True, timeout=120, env=env, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # -7 would be the SIGBUS
    assert done.stdout.split()[-1] == "50"


RAW_SQLITE_PROBE = """
import sqlite3, subprocess, sys
database, mode = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(database)
conn.execute(f"PRAGMA journal_mode={mode}")
conn.execute("CREATE TABLE t (x BLOB)")
for _ in range(10):
    conn.execute("INSERT INTO t VALUES (?)", (b"x" * 20000,))
    conn.commit()
files = [database] + [database + s for s in ("-wal", "-shm", "-journal")]
subprocess.run(["chattr", "+i", *[f for f in files if __import__("os").path.exists(f)]], check=True)
try:
    conn.execute("INSERT INTO t VALUES (?)", (b"y" * 20000,))
    conn.commit()
    print("written")
except sqlite3.Error as error:
    print("error:", error)
finally:
    subprocess.run(["chattr", "-i", *[f for f in files if __import__("os").path.exists(f)]], check=False)
"""


def test_the_cause_wal_index_mapping_is_a_sigbus_and_a_rollback_journal_an_error(tmp_path: Path) -> None:
    """Why the default store has no WAL: SQLite itself, without this service, on a store made immutable with
    a connection open. In WAL mode the write to the memory-mapped -shm index kills the process (SIGBUS); with a
    rollback journal (the default) the same write is an ordinary error."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("making the store file immutable needs root and chattr")
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable flag")
    subprocess.run(["chattr", "-i", str(probe)], check=True)

    def run(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", RAW_SQLITE_PROBE, str(tmp_path / f"{mode}.db"), mode],
                              capture_output=True, text=True, timeout=60)

    try:
        wal = run("WAL")
    finally:  # the child died before its own clean-up
        subprocess.run(["chattr", "-i", *map(str, tmp_path.glob("WAL.db*"))], capture_output=True)
    assert wal.returncode == -signal.SIGBUS, (wal.returncode, wal.stdout, wal.stderr[-500:])
    rollback = run("PERSIST")
    assert rollback.returncode == 0 and rollback.stdout.startswith("error:"), (rollback.returncode, rollback.stdout)


# ------------------------------------------------------------------ the quote writer on a hung database


def _quote_row_writer(engine: sa.Engine, key_id: int, quote_id: str, hold: threading.Event | None = None):  # noqa: ANN202
    """One quote's writes, as the service's (a quote row and its audit row); `hold` keeps the writer inside
    its transaction until set."""
    import datetime as dt

    from features.store import audit

    def write(conn: sa.Connection) -> None:
        now = dt.datetime.now(dt.UTC)
        conn.execute(quotes.insert(), dict(
            quote_id=quote_id, credit_code="91330302000000000G", as_of=dt.date.today(), created_at=now,
            expires_at=now, api_key_id=key_id, role="loan_officer", consent_ref=None, idempotency_key=None,
            request_json="{}", snapshot_json="{}", response_json="{}", response_sha256="0" * 64))
        audit.append(conn, "writer-test", "quote.create", f"quote:{quote_id}")
        if hold is not None:
            assert hold.wait(30)
    return write


def test_writer_fails_a_whole_group_at_once_on_a_hung_database(postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    """A group that fails because the database hangs fails every quote at once (one timeout), instead of
    retrying them one quote per transaction, each waiting out the timeout again."""
    import uuid

    from api.http.errors import STORE_ERRORS
    from api.quoting.writer import GroupWriter
    from features.store.db import connect

    with settings_env(database_statement_timeout_seconds="1", database_connect_timeout_seconds="1",
                      database_pool_timeout_seconds="1"):
        connect.cache_clear()
        engine = migrate(postgres.url)
        create_key(engine, Role.loan_officer, "writer-test")
        with engine.connect() as conn:
            key_id = conn.execute(sa.text("SELECT id FROM api_keys")).scalar_one()
        writer = GroupWriter(engine)
        hold = threading.Event()
        first = writer.submit(_quote_row_writer(engine, key_id, str(uuid.uuid4()), hold))
        time.sleep(0.5)  # the writer is inside the first transaction, the database healthy
        postgres.signal(signal.SIGSTOP)
        try:
            done_at: list[float] = []
            group = [writer.submit(_quote_row_writer(engine, key_id, str(uuid.uuid4()))) for _ in range(8)]
            for future in group:
                future.add_done_callback(lambda _f: done_at.append(time.monotonic()))
            released = time.monotonic()
            hold.set()  # the first commit now meets the hung server, then the group of 8 behind it
            errors = [f.exception(timeout=120) for f in [first, *group]]
            took = time.monotonic() - released
        finally:
            postgres.signal(signal.SIGCONT)
            writer.stop()
            engine.dispose()
            connect.cache_clear()
    assert all(isinstance(e, STORE_ERRORS) for e in errors), errors
    # the client-side deadline is the statement timeout + 2 s = 3 s per attempt: two attempts (the first
    # quote, then its 8 followers together), never nine
    assert max(done_at) - min(done_at) < 1.0, sorted(t - released for t in done_at)
    assert took < 3 * 3.0 + 3.0, took


def test_writer_drops_a_quote_whose_waiter_gave_up_before_it_was_written(tmp_path: Path) -> None:
    """Quotes queued behind a slow transaction whose requests' deadlines pass meanwhile are never written (the
    caller was answered 503); the ones still awaited are."""
    import uuid

    from api.quoting.writer import GroupWriter, WaiterGaveUpError

    engine = migrate(f"sqlite:///{tmp_path / 'writer.db'}")
    create_key(engine, Role.loan_officer, "writer-test")
    with engine.connect() as conn:
        key_id = conn.execute(sa.text("SELECT id FROM api_keys")).scalar_one()
    writer = GroupWriter(engine)
    hold = threading.Event()
    slow_id = str(uuid.uuid4())
    slow = writer.submit(_quote_row_writer(engine, key_id, slow_id, hold))
    time.sleep(0.3)
    given_up = {str(uuid.uuid4()): time.monotonic() + 0.5 for _ in range(4)}
    awaited = {str(uuid.uuid4()): time.monotonic() + 60 for _ in range(3)}
    futures = {q: writer.submit(_quote_row_writer(engine, key_id, q), at) for q, at in {**given_up, **awaited}.items()}
    time.sleep(1.0)  # the four deadlines pass while the writer is still busy with the slow quote
    hold.set()
    assert slow.exception(timeout=30) is None
    for quote_id, future in futures.items():
        error = future.exception(timeout=30)
        assert isinstance(error, WaiterGaveUpError) if quote_id in given_up else error is None, (quote_id, error)
    writer.stop()
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(quotes.c.quote_id)).scalars()) == {slow_id, *awaited}


def test_quotes_answered_503_by_the_deadline_are_not_stored_later(postgres: ThrowawayPostgres, tmp_path: Path) -> None:
    """Over HTTP: while the database hangs, quotes get the deadline's 503; when it answers again, only the one
    quote whose transaction was already in flight may be stored (the known limit, docs/security.md), not the
    ones queued behind it."""
    key, codes = populate(postgres.url, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    with (settings_env(request_timeout_seconds="2", database_statement_timeout_seconds="6",
                       database_connect_timeout_seconds="2", database_pool_timeout_seconds="2",
                       runtime_dir=str(tmp_path / "run"), **UNLIMITED),
          serve(create_app(database_url=postgres.url)) as base,
          httpx.Client(base_url=base, timeout=30) as client):
        assert client.post("/v1/quotes", json={"credit_code": codes[0]}, headers=headers).status_code == 201
        before = len(stored_ids(postgres.url))
        postgres.signal(signal.SIGSTOP)
        try:
            statuses: list[int] = []

            def one(i: int) -> None:
                with httpx.Client(base_url=base, timeout=30) as c:
                    statuses.append(c.post("/v1/quotes", json={"credit_code": codes[i]}, headers=headers).status_code)

            threads = [threading.Thread(target=one, args=(1,))]
            threads[0].start()
            time.sleep(0.5)  # the first one's transaction is in flight; the others queue behind it
            threads += [threading.Thread(target=one, args=(i,)) for i in range(2, 8)]
            for t in threads[1:]:
                t.start()
            for t in threads:
                t.join(30)
            assert statuses == [503] * 7, statuses
            time.sleep(0.5)
        finally:
            postgres.signal(signal.SIGCONT)
        deadline = time.monotonic() + 30  # recovery, and the writer has drained what it held
        while client.post("/v1/quotes", json={"credit_code": codes[20]}, headers=headers).status_code != 201:
            assert time.monotonic() < deadline, "no recovery after the database resumed"
            time.sleep(0.2)
    after = len(stored_ids(postgres.url))
    assert after - before - 1 <= 1, (before, after)  # the recovery quote, and at most the one in flight
