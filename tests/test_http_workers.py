"""`indexloan serve --workers 2` as a real subprocess: `/metrics` adds up what both worker processes served."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.live_server import served, worker_pids


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    with served(tmp_path, workers=2, ready="/readyz") as server:  # an empty embedded store, migrated by `serve`
        yield server.base, server.proc


def _healthz_count(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    match = re.search(r'^indexloan_http_requests_total\{route="/healthz",status="200"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_add_up_requests_served_by_two_worker_processes(two_workers: tuple[str, subprocess.Popen]) -> None:
    base, proc = two_workers
    workers = worker_pids(proc.pid)
    metrics_dirs = {_environ(pid).get("PROMETHEUS_MULTIPROC_DIR") for pid in workers}
    assert len(workers) >= 2 and len(metrics_dirs) == 1 and None not in metrics_dirs
    metrics_dir = Path(metrics_dirs.pop())
    started = set(workers)

    def one(_: int) -> int:  # a new connection per request, so the kernel spreads them over both workers
        with httpx.Client(timeout=10) as client:
            return client.get(f"{base}/healthz").status_code

    sent = _healthz_count(base)  # the start-up probes (tests.live_server.served) are counted too
    served_by: set[int] = set()
    for _round in range(5):  # until both workers have served some (almost always the first round)
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(one, range(120)))
        assert statuses == [200] * 120
        sent += 120
        served_by = {int(p.stem.split("_")[-1]) for p in metrics_dir.glob("counter_*.db")} & started
        if len(served_by) == 2:
            break
    assert len(served_by) == 2, f"only workers {served_by} of {started} wrote metrics"
    # a worker counts a request just after sending its response: give the last ones a moment
    deadline = time.monotonic() + 5
    while _healthz_count(base) != sent and time.monotonic() < deadline:
        time.sleep(0.05)
    # every scrape, whichever worker answers it, reports the requests of both
    assert [_healthz_count(base) for _ in range(6)] == [float(sent)] * 6


def test_serve_removes_its_metrics_directory_on_exit(two_workers: tuple[str, subprocess.Popen]) -> None:
    _base, proc = two_workers
    metrics_dir = Path(_environ(worker_pids(proc.pid)[0])["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert not metrics_dir.exists()
