"""Benchmark the quote path over loopback HTTP against a bare explain-only FastAPI app, in one run.

    .venv/bin/python bench/http.py [--firms 20000] [--seconds 8] [--workers 1,2] [--connections 1,32]
                                   [--store DIR]

1. Prepares a demo store in a temp dir (or reuses --store): demo-data -> ingest -> demo-setup, which
   trains and promotes a champion model and prints one API key per role.
2. Starts `indexloan serve --workers N` on a free loopback port and measures `POST /v1/quotes` (all five
   products, stored, explained: SHAP risk factors and scorecard reasons) as a loan officer, over
   different enterprises (round-robin over the store), at each connection count.
3. Starts the two bare apps of bench/bare_app.py under uvicorn with the same worker count and measures
   them the same way: our champion's contributions on one pre-encoded row, and `pred_contrib` of the
   reference model (200 trees x 31 leaves, 30 numeric features, synthetic data), nothing else.
4. At the largest worker and connection counts, quotes again while `indexloan ingest` lands a small
   batch mid-run: p50/p99/max before it, while it is ingested and absorbed, and after.
5. Prints req/s, p50 and p99 latency, server CPU per request and errors per cell, and the ratios of
   quotes to either bare app, with the load average.

The load comes from bench/loadgen.py processes (raw asyncio HTTP/1.1 keep-alive, closed loop), which
share the machine's cores with the server: the figures are for client and server together.
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/http.py`, this file's folder comes first on sys.path and would shadow the
# standard library's `http` package: drop it before anything imports http.client.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench.reference and bench.bare_app, whatever the working directory
BIN = Path(sys.executable).parent
LOADGEN = ROOT / "bench" / "loadgen.py"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def tree_cpu_seconds(root: int) -> float:
    """user + system CPU seconds of a live process and its live descendants (from /proc)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(cpu.get(pid, 0.0) for pid in tree)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare_store(store: Path, firms: int, seed: int, env: dict[str, str]) -> str:
    """A demo store in `store` (built once) and a fresh loan officer key."""
    indexloan = str(BIN / "indexloan")
    marker = store / "bench-ready"
    if not marker.exists():
        t0 = time.perf_counter()
        run([indexloan, "demo-data", "--firms", str(firms), "--seed", str(seed), "--out", str(store / "region")], env)
        run([indexloan, "ingest", str(store / "region"), "--json"], env)
        marker.write_text(f"{firms} {seed}\n")
        print(f"store: {firms:,} synthetic enterprises (seed {seed}) ingested in {time.perf_counter() - t0:.1f} s")
    out = run([indexloan, "demo-setup"], env)
    keys = dict(line.split(None, 1) for line in out.splitlines() if line.startswith(("loan_officer", "platform")))
    return keys["loan_officer"].strip()


def credit_codes(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT credit_code FROM src_registry ORDER BY credit_code")]


def stored_quotes(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT count(*) FROM quotes").fetchone()[0]


def wait_ready(port: int, path: str, seconds: float = 900.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not become ready")


def wait_rendered(port: int, workers: int, firms: int, seconds: float = 1800.0) -> float:
    """Wait until every worker says (/readyz) that today's quotes are rendered ahead (all of them, or as many
    as a population renders: api.quoting.population.MAX_RENDERED_BLOCKS); seconds waited."""
    from api.quoting.population import BLOCK, MAX_RENDERED_BLOCKS

    target = min(1.0, MAX_RENDERED_BLOCKS * BLOCK / firms)
    t0 = time.monotonic()
    streak = 0
    while streak < 6 * workers:  # answers come from any worker: enough in a row that each was asked
        if time.monotonic() - t0 > seconds:
            raise RuntimeError("quotes were not rendered in time")
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/readyz")
            share = json.loads(conn.getresponse().read()).get("quotes_rendered")
            conn.close()
            streak = streak + 1 if share is not None and share >= target - 1e-9 else 0
        time.sleep(0.05 if streak else 0.5)
    return time.monotonic() - t0


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], port: int, ready_path: str) -> Iterator[int]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    try:
        wait_ready(port, ready_path)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn's supervisor stops its workers on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we created for this server
            proc.wait()


@dataclass
class Figures:
    requests: int
    ok: int
    errors: dict
    statuses: dict
    seconds: float
    latencies: np.ndarray
    server_cpu: float = 0.0  # CPU seconds used by the server processes / the load generators
    client_cpu: float = 0.0
    starts: np.ndarray | None = None  # each request's start (Unix seconds), in the order of `latencies`

    def cpu_ms(self, seconds: float) -> float:
        return seconds / max(self.requests, 1) * 1e3

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1e3) if len(self.latencies) else float("nan")


def load(port: int, path: str, headers: list[str], bodies: Path, connections: int, processes: int,
         seconds: float, work: Path, ok_status: int) -> Figures:
    processes = max(1, min(processes, connections))
    per = [connections // processes + (1 if p < connections % processes else 0) for p in range(processes)]
    procs = []
    for p, conns in enumerate(per):
        cmd = [sys.executable, str(LOADGEN), "--port", str(port), "--path", path, "--connections", str(conns),
               "--seconds", str(seconds), "--bodies", str(bodies), "--offset", str(p), "--processes",
               str(processes), "--out", str(work / f"lat-{p}.npy"), "--starts", str(work / f"start-{p}.npy")]
        for h in headers:
            cmd += ["--header", h]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    results = [json.loads(proc.communicate()[0]) for proc in procs]
    latencies = np.concatenate([np.load(work / f"lat-{p}.npy") for p in range(processes)])
    starts = np.concatenate([np.load(work / f"start-{p}.npy") for p in range(processes)])
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return Figures(sum(r["requests"] for r in results), statuses.get(str(ok_status), 0), errors, statuses,
                   max(r["elapsed"] for r in results), latencies, starts=starts)


def quote_once(port: int, key: str, code: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/quotes", json.dumps({"credit_code": code, "products": ["tax_credit"]}),
                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = conn.getresponse()
        return json.loads(response.read()) if response.status == 201 else {}
    finally:
        conn.close()


def tax_credit_eligible(port: int, key: str, code: str) -> bool:
    quotes = quote_once(port, key, code).get("quotes") or [{}]
    return bool(quotes[0].get("eligible"))


def downgrade_batch(store: Path, firms: list[str], out: Path) -> None:
    """A small new ingestion batch: these firms' latest tax record again, dated yesterday, grade D."""
    import pandas as pd

    tax = pd.read_parquet(store / "region" / "tax.parquet")
    rows = tax[tax["credit_code"].isin(firms)].sort_values("as_of").groupby("credit_code").tail(1).copy()
    rows["as_of"] = pd.Timestamp(dt.date.today() - dt.timedelta(days=1))
    rows["tax_credit_grade"] = "D"
    out.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(out / "tax.parquet", index=False)


def absorbing(port: int, key: str, bodies: Path, store: Path, env: dict[str, str], work: Path, connections: int,
              processes: int, seconds: float, workers: int) -> None:
    """Quotes at `connections` for `seconds` while `indexloan ingest` lands a small batch a third of the way
    in; the latency before the ingest starts, while it runs and its state is rebuilt (until every worker
    answers with the new data), and after."""
    codes = [json.loads(line)["credit_code"] for line in bodies.read_text().splitlines()]
    marked = [c for c in codes[::97] if tax_credit_eligible(port, key, c)][:20]
    if not marked:
        print("ingestion phase skipped: no tax_credit offer found to change")
        return
    batch = work / f"batch-{int(time.time())}"
    downgrade_batch(store, marked, batch)
    times: dict[str, float] = {}

    def ingest_later() -> None:
        time.sleep(seconds / 3)
        times["ingest"] = time.time()
        run([str(BIN / "indexloan"), "ingest", str(batch), "--json"], env)
        times["ingested"] = time.time()
        streak = 0  # every worker has swapped its state once this many answers in a row show the new data
        while streak < 4 * workers and time.time() < times["ingest"] + 4 * seconds:
            streak = streak + 1 if not tax_credit_eligible(port, key, marked[0]) else 0
            time.sleep(0.05)
        times["absorbed"] = time.time()

    thread = threading.Thread(target=ingest_later)
    thread.start()
    f = load(port, "/v1/quotes", [f"Authorization: Bearer {key}"], bodies, connections, processes, seconds, work, 201)
    thread.join()
    if times["absorbed"] > times["ingest"] + seconds:
        print(f"ingestion phase: the batch was absorbed {times['absorbed'] - times['ingest']:.1f} s after the ingest "
              "started, after the run's end: run longer (--ingest-seconds)")
    windows = {"before": f.starts < times["ingest"],
               "during": (f.starts >= times["ingest"]) & (f.starts < times["absorbed"]),
               "after": f.starts >= times["absorbed"]}
    print(f"\ningestion while serving ({workers} workers x {connections} connections): `indexloan ingest` of "
          f"{len(marked)} firms' tax records took {times['ingested'] - times['ingest']:.1f} s; every worker served "
          f"the new data {times['absorbed'] - times['ingest']:.1f} s after it started; statuses {f.statuses} "
          f"errors {f.errors}")
    for name, mask in windows.items():
        lat = f.latencies[mask] * 1e3
        if len(lat):
            print(f"  {name:6s}: {len(lat):6d} quotes  p50 {np.percentile(lat, 50):6.2f} ms  p99 "
                  f"{np.percentile(lat, 99):6.2f} ms  max {lat.max():7.2f} ms")
    print(f"  {uptime()}")


APPS = {  # name -> (path, needs the quote key, ok status, readiness path, uvicorn app or None for `indexloan serve`)
    "quote": ("/v1/quotes", True, 201, "/readyz", None),
    "bare": ("/score", False, 200, "/openapi.json", "bench.bare_app:app"),
    "ref": ("/score", False, 200, "/openapi.json", "bench.bare_app:reference"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--store", type=Path, help="reuse (or build once into) this directory")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--connections", default="1,32")
    ap.add_argument("--client-processes", type=int, default=2, help="load generator processes for >1 connection")
    ap.add_argument("--skip-bare", action="store_true", help="measure our quotes only")
    ap.add_argument("--sqlite-wal", action="store_true", help="the SQLite store in WAL mode (settings.sqlite_wal)")
    ap.add_argument("--ingest-seconds", type=float, default=60.0,
                    help="length of the run during which a new batch is ingested (0: skip)")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    connections = [int(c) for c in args.connections.split(",")]

    with contextlib.ExitStack() as stack:
        store = args.store or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
        store.mkdir(parents=True, exist_ok=True)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-work-")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXLOAN_")}
        env.update(INDEXLOAN_DATA_DIR=str(store), PYTHONPATH=str(ROOT))
        if args.sqlite_wal:
            env["INDEXLOAN_SQLITE_WAL"] = "true"
        # the measured load comes from one key and one address: lift the per-caller limits (bench/load.py does too)
        env.update({f"INDEXLOAN_RATE_LIMIT_{who}_{what}": "1000000" for who in ("KEY", "ADDRESS")
                    for what in ("PER_SECOND", "BURST")})
        key = prepare_store(store, args.firms, args.seed, env)
        if not args.skip_bare:
            from bench.reference import reference_model

            t0 = time.perf_counter()
            reference_model(cache=work)  # trained once here; every worker of the bare app loads it
            env["BENCH_REFERENCE_DIR"] = str(work)
            print(f"reference model (200 trees x 31 leaves, 30 features) trained in {time.perf_counter() - t0:.1f} s")
        db = store / "indexloan.db"
        codes = credit_codes(db)
        bodies = work / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"credit_code": c}) + "\n" for c in codes))
        print(f"{len(codes):,} enterprises; {os.cpu_count()} CPUs; SQLite store "
              f"{'in WAL mode' if args.sqlite_wal else 'with a rollback journal (the default)'}; {uptime()}")

        names = ["quote"] if args.skip_bare else list(APPS)
        table: dict[tuple[str, int, int], Figures] = {}
        for w in workers:  # per worker count, every app in turn: the cells compared run minutes apart at most
            for name in names:
                path, keyed, ok_status, ready, target = APPS[name]
                headers = [f"Authorization: Bearer {key}"] if keyed else []
                port = free_port()
                if target is None:
                    cmd = [str(BIN / "indexloan"), "serve", "--port", str(port), "--workers", str(w)]
                else:
                    cmd = [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--workers",
                           str(w), "--log-level", "warning", "--no-access-log"]
                with server(cmd, env, port, ready) as pid:
                    if name == "quote":
                        waited = wait_rendered(port, w, len(codes))
                        print(f"      quotes rendered ahead by every worker {waited:.0f} s after ready", flush=True)
                    before = stored_quotes(db)
                    load(port, path, headers, bodies, max(connections), args.client_processes, args.warmup, work,
                         ok_status)
                    for c in connections:
                        server0, client0 = tree_cpu_seconds(pid), children_cpu_seconds()
                        f = load(port, path, headers, bodies, c, args.client_processes, args.seconds, work, ok_status)
                        f.server_cpu = tree_cpu_seconds(pid) - server0
                        f.client_cpu = children_cpu_seconds() - client0
                        table[(name, w, c)] = f
                        print(f"{name:5s} workers {w} connections {c:3d}: {f.rate:8.1f} req/s  p50 {f.pct(50):6.2f} ms"
                              f"  p99 {f.pct(99):6.2f} ms  CPU per request: server {f.cpu_ms(f.server_cpu):.2f} ms,"
                              f" load generator {f.cpu_ms(f.client_cpu):.2f} ms  statuses {f.statuses}"
                              f" errors {f.errors}  | {uptime()}", flush=True)
                    if name == "quote":
                        print(f"      quotes stored during the run (incl. warm-up): {stored_quotes(db) - before:,}")
                        if args.ingest_seconds and w == max(workers):
                            absorbing(port, key, bodies, store, env, work, max(connections), args.client_processes,
                                      args.ingest_seconds, w)

        def cell(f: Figures | None) -> str:
            if f is None:
                return f"{'-':>9} {'-':>7} {'-':>7} {'-':>7} {'-':>4}"
            errors = sum(f.errors.values()) + f.requests - f.ok
            return f"{f.rate:9.1f} {f.pct(50):7.2f} {f.pct(99):7.2f} {f.cpu_ms(f.server_cpu):7.2f} {errors:>4}"

        def ratio(q: Figures, b: Figures | None) -> str:
            return f"{q.rate / b.rate:6.2f}" if b else f"{'-':>6}"

        columns = f"{'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>7} {'err':>4}"
        print(f"\n{'workers':>7} {'conns':>5} | quote {columns} | bare champion {columns} | bare reference {columns}"
              f" | {'q/bare':>6} {'q/ref':>6}")
        for w in workers:
            for c in connections:
                q = table[("quote", w, c)]
                b, r = table.get(("bare", w, c)), table.get(("ref", w, c))
                print(f"{w:>7} {c:>5} | {cell(q)} | {cell(b)} | {cell(r)} | {ratio(q, b)} {ratio(q, r)}")
        print("quote = stored, explained quotes (all five products, champion model); bare champion = a bare FastAPI "
              "app answering the champion's contributions for one row; bare reference = the same for pred_contrib of "
              "a 200-tree x 31-leaf LightGBM model on 30 features; cpu ms = server CPU time per request (all its "
              f"processes); err = non-OK answers + connection errors. {uptime()}")


if __name__ == "__main__":
    main()
