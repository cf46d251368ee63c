"""`indexloan serve --workers 2` as a real subprocess: `/metrics` adds up what both worker processes served."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

INDEXLOAN = str(Path(sys.executable).parent / "indexloan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INDEXLOAN_", "PROMETHEUS_"))}
    env["INDEXLOAN_DATA_DIR"] = str(tmp_path)  # an empty embedded store, migrated by `serve`
    proc = subprocess.Popen([INDEXLOAN, "serve", "--port", str(port), "--workers", "2"], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this test created for the server
            proc.wait()


def _healthz_count(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    match = re.search(r'^indexloan_http_requests_total\{route="/healthz",status="200"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_add_up_requests_served_by_two_worker_processes(two_workers: tuple[str, subprocess.Popen]) -> None:
    base, proc = two_workers
    workers = _children(proc.pid)
    metrics_dirs = {_environ(pid).get("PROMETHEUS_MULTIPROC_DIR") for pid in workers}
    assert len(workers) >= 2 and len(metrics_dirs) == 1 and None not in metrics_dirs
    metrics_dir = Path(metrics_dirs.pop())
    worker_pids = set(workers)

    def one(_: int) -> int:  # a new connection per request, so the kernel spreads them over both workers
        with httpx.Client(timeout=10) as client:
            return client.get(f"{base}/healthz").status_code

    sent = 0
    served_by: set[int] = set()
    for _round in range(5):  # until both workers have served some (almost always the first round)
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(one, range(120)))
        assert statuses == [200] * 120
        sent += 120
        served_by = {int(p.stem.split("_")[-1]) for p in metrics_dir.glob("counter_*.db")} & worker_pids
        if len(served_by) == 2:
            break
    assert len(served_by) == 2, f"only workers {served_by} of {worker_pids} wrote metrics"
    # a worker counts a request just after sending its response: give the last ones a moment
    deadline = time.monotonic() + 5
    while _healthz_count(base) != sent and time.monotonic() < deadline:
        time.sleep(0.05)
    # every scrape, whichever worker answers it, reports the requests of both
    assert [_healthz_count(base) for _ in range(6)] == [float(sent)] * 6


def test_serve_removes_its_metrics_directory_on_exit(two_workers: tuple[str, subprocess.Popen]) -> None:
    _base, proc = two_workers
    metrics_dir = Path(_environ(_children(proc.pid)[0])["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert not metrics_dir.exists()
