"""A bounded soak of the real service on loopback: mixed load on `indexloan serve --workers N`, optionally with a
worker killed (kill -9) mid-run, then every acknowledged quote looked up in the store.

    python bench/load.py [--seconds 60] [--max-requests 300000] [--connections 32] [--workers 2]
                         [--firms 5000] [--kill-worker-at 20] [--store DIR]
                         [--batch-job-at 10 --batch-reasons 3] [--code DIR]

With --batch-job-at, a whole-region pre-credit job (every product, --batch-reasons explanations) is started
over the API at that second; quote latency is then reported apart while it is queued or running, and the
job's own duration. --code runs another checkout's code (`python -m api.cli.main` from DIR) instead of the
`indexloan` script, to compare two versions on the same store.

The store (a synthetic region, ingested; a champion model trained and promoted by `demo-setup`) is built
once into --store (default a temporary folder). The client is one asyncio process with pre-built requests
(70% quotes, 20% product list, 10% /healthz), closed loop per connection, on 127.0.0.1 only. It stops at
--seconds or --max-requests, whichever comes first. Prints one JSON document: answers by status, transport
errors (connections the kill cut), throughput, latency percentiles per kind, acknowledged quotes and how
many of them the store lacks (must be 0), worker restarts, and the load averages before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INDEXLOAN = str(Path(sys.executable).parent / "indexloan")
QUOTE_ID = re.compile(rb'"quote_id":"([0-9a-f-]{36})"')
MAX_SECONDS = 900.0


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, cwd=env.get("PYTHONPATH", ROOT), capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare(store: Path, firms: int, env: dict[str, str], cli: list[str]) -> tuple[dict[str, str], list[str]]:
    if not (store / "load-ready").exists():
        run([*cli, "demo-data", "--firms", str(firms), "--seed", "7", "--out", str(store / "region")], env)
        run([*cli, "ingest", str(store / "region"), "--json"], env)
        (store / "load-ready").write_text(str(firms))
    out = run([*cli, "demo-setup"], env)
    keys = {role: key.strip() for role, key in (line.split(None, 1) for line in out.splitlines()
                                                 if line.startswith(("loan_officer", "risk_analyst")))}
    with contextlib.closing(sqlite3.connect(store / "indexloan.db")) as conn:
        codes = [r[0] for r in conn.execute("SELECT DISTINCT credit_code FROM src_registry ORDER BY credit_code")]
    return keys, codes


class BatchJob:
    """Starts one whole-region job over the API and follows it (in a thread: the client's loop stays free)."""

    def __init__(self, port: int, key: str, reasons: int) -> None:
        self.port = port
        self.key = key
        self.reasons = reasons
        self.started: float | None = None
        self.ended: float | None = None
        self.outcome: dict = {}
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> None:
        self.started = time.perf_counter()
        self._thread.start()

    def _call(self, path: str, body: bytes | None = None) -> dict:
        """One request on a connection of its own (this folder's http.py shadows the standard library's)."""
        head = (f"{'POST' if body else 'GET'} /v1/batch/precredit{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.key}\r\nConnection: close\r\n")
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head.encode() + b"\r\n" + (body or b""))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return json.loads(answer.split(b"\r\n\r\n", 1)[1])

    def _follow(self) -> None:
        job = self._call("", json.dumps({"reasons": self.reasons}).encode())
        while job["status"] in ("queued", "running"):
            time.sleep(0.5)
            job = self._call(f"/{job['job_id']}")
        self.ended = time.perf_counter()
        self.outcome = {"status": job["status"], "rows": job.get("result_rows"), "error": job.get("error"),
                        "seconds": round(self.ended - self.started, 1)}

    def during(self, at: float) -> bool:
        return self.started is not None and at >= self.started and (self.ended is None or at <= self.ended)


def workers_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in Path(
                        f"/proc/{entry}/cmdline").read_bytes():
                    found.add(int(entry))
    return found


def requests_for(port: int, key: str, codes: list[str]) -> list[tuple[str, bytes]]:
    host = f"127.0.0.1:{port}"
    auth = f"Authorization: Bearer {key}"
    out: list[tuple[str, bytes]] = []
    for i, code in enumerate(codes[:2000]):
        body = json.dumps({"credit_code": code}).encode()
        out.append(("quote", f"POST /v1/quotes HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nContent-Type: application/json"
                             f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body))
        if i % 7 in (1, 4):
            out.append(("products", f"GET /v1/products HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n".encode()))
        if i % 7 == 6:
            out.append(("healthz", f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()))
    return out


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length) if length else b""


async def soak(port: int, requests: list[tuple[str, bytes]], connections: int, seconds: float, max_requests: int,
               on_tick) -> dict:  # noqa: ANN001 - called once a second with the elapsed time
    statuses: Counter = Counter()
    errors: Counter = Counter()
    latencies: dict[str, list[float]] = defaultdict(list)
    started_at: dict[str, list[float]] = defaultdict(list)
    acknowledged: list[str] = []
    sent = 0
    deadline = time.perf_counter() + seconds

    async def connection(start: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = start
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                kind, request = requests[i % len(requests)]
                i += 1
                sent += 1
                t0 = time.perf_counter()
                try:
                    writer.write(request)
                    status, body = await read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError, OSError) as error:
                    errors[type(error).__name__] += 1
                    writer.close()
                    await asyncio.sleep(0.05)
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies[kind].append(time.perf_counter() - t0)
                started_at[kind].append(t0)
                statuses[f"{kind} {status}"] += 1
                if kind == "quote" and status == 201:
                    acknowledged.append(QUOTE_ID.search(body).group(1).decode())
        finally:
            writer.close()

    async def ticker() -> None:
        t0 = time.perf_counter()
        while time.perf_counter() < deadline and sent < max_requests:
            await asyncio.sleep(1.0)
            on_tick(time.perf_counter() - t0)

    t0 = time.perf_counter()
    stride = max(1, len(requests) // connections)
    await asyncio.gather(ticker(), *[connection(c * stride) for c in range(connections)])
    return {"elapsed": time.perf_counter() - t0, "statuses": dict(statuses), "errors": dict(errors),
            "latencies": latencies, "started_at": started_at, "acknowledged": acknowledged}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 1)

    return {"n": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1e3, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=300_000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--firms", type=int, default=5000)
    ap.add_argument("--kill-worker-at", type=float, default=None, help="kill -9 one worker after this many seconds")
    ap.add_argument("--store", type=Path, help="build once into (and reuse) this directory")
    ap.add_argument("--sqlite-wal", action="store_true", help="the store in WAL mode (settings.sqlite_wal)")
    ap.add_argument("--batch-job-at", type=float, default=None, help="start a whole-region batch job at this second")
    ap.add_argument("--batch-reasons", type=int, default=3, help="explanations per row of that job")
    ap.add_argument("--code", type=Path, help="run this checkout's code instead of the indexloan script")
    args = ap.parse_args()
    cli = [INDEXLOAN] if args.code is None else [sys.executable, "-m", "api.cli.main"]
    cwd = ROOT if args.code is None else args.code.resolve()
    seconds = min(args.seconds, MAX_SECONDS)
    store = args.store or Path(tempfile.mkdtemp(prefix="indexloan-load-"))
    store.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INDEXLOAN_", "PROMETHEUS_"))}
    env.update({"INDEXLOAN_DATA_DIR": str(store), "INDEXLOAN_SQLITE_WAL": "true" if args.sqlite_wal else "false",
                # one client address, one key: the soak measures the service, not its rate limits
                "INDEXLOAN_RATE_LIMIT_KEY_PER_SECOND": "1000000", "INDEXLOAN_RATE_LIMIT_KEY_BURST": "1000000",
                "INDEXLOAN_RATE_LIMIT_ADDRESS_PER_SECOND": "1000000",
                "INDEXLOAN_RATE_LIMIT_ADDRESS_BURST": "1000000"})
    if args.code is not None:
        env["PYTHONPATH"] = str(cwd)
    keys, codes = prepare(store, args.firms, env, cli)
    key = keys["loan_officer"]
    port = free_port()
    log = (store / "serve.log").open("ab")
    proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers", str(args.workers)], env=env,
                            cwd=cwd, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("the server did not become ready")
            time.sleep(0.5)
        before = loadavg()
        started_workers = workers_of(proc.pid)

        batch = BatchJob(port, keys["risk_analyst"], args.batch_reasons)

        def tick(elapsed: float) -> None:
            if args.batch_job_at is not None and batch.started is None and elapsed >= args.batch_job_at:
                batch.start()
            if args.kill_worker_at is not None and not killed and elapsed >= args.kill_worker_at:
                victim = min(workers_of(proc.pid))
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        result = asyncio.run(soak(port, requests_for(port, key, codes), args.connections, seconds, args.max_requests,
                                  tick))
        after = loadavg()
        restarted = len(workers_of(proc.pid) - started_workers)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    with contextlib.closing(sqlite3.connect(store / "indexloan.db")) as conn:
        stored = {r[0] for r in conn.execute("SELECT quote_id FROM quotes")}
    acknowledged = result["acknowledged"]
    server_errors = {k: v for k, v in result["statuses"].items() if int(k.split()[1]) >= 500}
    answered = sum(result["statuses"].values())
    report = {
        "seconds": round(result["elapsed"], 1), "connections": args.connections, "workers": args.workers,
        "sqlite_wal": args.sqlite_wal, "answers": answered, "per_second": round(answered / result["elapsed"], 1),
        "statuses": result["statuses"], "server_errors": server_errors, "transport_errors": result["errors"],
        "latency": {kind: percentiles(v) for kind, v in result["latencies"].items()},
        **({} if args.batch_job_at is None else {"batch_job": batch.outcome, "quote_latency_during_batch": percentiles(
            [v for v, t in zip(result["latencies"]["quote"], result["started_at"]["quote"], strict=True)
             if batch.during(t)]), "quote_latency_outside_batch": percentiles(
            [v for v, t in zip(result["latencies"]["quote"], result["started_at"]["quote"], strict=True)
             if not batch.during(t)])}),
        "acknowledged_quotes": len(acknowledged), "acknowledged_missing_from_store": len(set(acknowledged) - stored),
        "killed_workers": killed, "workers_started_by_supervisor": restarted,
        "loadavg_before": before, "loadavg_after": after,
    }
    print(json.dumps(report, indent=2))
    if args.store is None:
        shutil.rmtree(store, ignore_errors=True)
    if report["acknowledged_missing_from_store"] or server_errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
