"""The real app served by uvicorn on a free loopback port, in a thread, for tests that need real HTTP;
`indexloan serve` as a real subprocess (one or more worker processes) for tests that need processes; and a
champion model and batch folder kept inside the test's own directory (never the repository's var/)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

START_TIMEOUT_SECONDS = 30.0
SERVE_TIMEOUT_SECONDS = 120.0  # a subprocess service migrates, builds its quoting state and forks workers
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` (lifespan included) until the block ends; yields its base URL."""
    # Bind first and hand the socket to uvicorn: no window in which another process can take the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def champion_in(models_dir: Path) -> Callable[[sa.Engine], None]:
    """A `prepare` callback: train from the store and promote through maker-checker, artifacts in models_dir."""

    def prepare(engine: sa.Engine) -> None:
        from training.config import load_config
        from training.datasets import from_store
        from training.pipeline import train_pipeline
        from training.registry import Registry

        cfg = load_config()
        trained = train_pipeline(from_store(engine=engine, config=cfg), cfg, models_dir.parent / "trained",
                                 operator="test-analyst", write_report=False)
        registry = Registry(engine, models_dir)
        model_id = registry.register(trained.out_dir, "test-analyst").id
        registry.request_promotion(model_id, "champion", "test-analyst", "test champion")
        registry.approve(model_id, "test-approver", "second person")

    return prepare


@contextlib.contextmanager
def private_batch_dir(directory: Path) -> Iterator[None]:
    """Batch job outputs of apps started inside the block go to `directory`."""
    from tests.conftest import settings_env

    with settings_env(batch_dir=str(directory)):
        yield


# ------------------------------------------------------------------ `indexloan serve` as a subprocess


def free_port() -> int:
    """A loopback port free now (for a subprocess that binds it itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_pids(pid: int) -> list[int]:
    """The uvicorn worker processes of the `serve` process `pid` (not multiprocessing's helpers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            if b"resource_tracker" not in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
    return sorted(found)


@dataclass
class Served:
    """A running `indexloan serve` subprocess: its base URL, process and combined output file."""

    base: str
    proc: subprocess.Popen
    log: Path

    def workers(self) -> list[int]:
        return worker_pids(self.proc.pid)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, path: str, timeout: float = SERVE_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.output()[-3000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}{path}", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{path} not ready: {self.output()[-3000:]}"
            time.sleep(0.1)

    def wait_workers(self, count: int, not_in: set[int] = frozenset(), timeout: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            workers = self.workers()
            if len(workers) == count and not set(workers) & not_in:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                        return workers
            assert self.proc.poll() is None, self.output()[-3000:]
            assert time.monotonic() < deadline, f"workers {workers}: {self.output()[-3000:]}"
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGINT (an orderly shutdown), then SIGKILL to the session the server was started in."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def served(directory: Path, workers: int = 2, database_url: str | None = None, ready: str = "/healthz",
           **settings: str) -> Iterator[Served]:
    """`indexloan serve --workers N` of this checkout on a free loopback port, data under `directory`
    (`INDEXLOAN_DATA_DIR`; `database_url` overrides its store), `settings` as INDEXLOAN_* variables; yields
    once `ready` answers 200 (and, with several workers, every worker has started); stopped at the end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INDEXLOAN_", "PROMETHEUS_"))}
    env.update(INDEXLOAN_DATA_DIR=str(directory), PYTHONPATH=str(ROOT))
    env.update({f"INDEXLOAN_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, "-m", "api.cli.main", "serve", "--port", str(port), "--workers", str(workers)]
    if database_url is not None:
        command += ["--database-url", database_url]
    log = directory / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True, stdout=out,
                                stderr=subprocess.STDOUT)
    server = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        server.wait_ready(ready)
        if workers > 1:
            server.wait_workers(workers, timeout=SERVE_TIMEOUT_SECONDS)
        yield server
    finally:
        server.stop()
