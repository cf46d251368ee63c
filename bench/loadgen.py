"""HTTP/1.1 keep-alive load generator (one process; run several for more load).

    python bench/loadgen.py --port P --path /v1/quotes --connections 16 --seconds 10 \
        --bodies bodies.jsonl --header 'Authorization: Bearer KEY' --out result.npy

Raw asyncio streams on uvloop with pre-built request bytes, so the client spends little CPU per
request (httpx costs several times more and would compete with the server for the same two cores).
Each connection sends one request, reads the whole response, then sends the next (closed loop).
Bodies are taken round-robin, with each connection starting at a different offset. Prints one JSON
line: requests, status counts, errors, elapsed seconds; latencies (seconds) go to --out as .npy, and
with --starts each request's start time (Unix seconds), in the same order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np


def build_requests(host: str, port: int, path: str, headers: list[str], bodies: list[bytes]) -> list[bytes]:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json", *headers]
    return ["\r\n".join([*head, f"Content-Length: {len(b)}", "", ""]).encode("latin-1") + b for b in bodies]


async def read_response(reader: asyncio.StreamReader) -> int:
    """Status code of one response (its body is read and discarded)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def connection(host: str, port: int, requests: list[bytes], start: int, deadline: float,
                     latencies: list[float], starts: list[float], statuses: Counter, errors: Counter) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    n = len(requests)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(requests[i % n])
            i += 1
            try:
                status = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                errors[type(error).__name__] += 1  # e.g. the server closed after a 500: reconnect
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - t0)
            starts.append(time.time() - (time.perf_counter() - t0))  # wall clock: comparable across processes
            statuses[status] += 1
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict:
    bodies = [line.encode("utf-8") for line in Path(args.bodies).read_text().splitlines() if line.strip()]
    requests = build_requests(args.host, args.port, args.path, args.header, bodies)
    latencies: list[float] = []
    starts: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    stride = max(1, len(requests) // max(1, args.connections * args.processes))
    t0 = time.perf_counter()
    deadline = t0 + args.seconds
    await asyncio.gather(*[
        connection(args.host, args.port, requests, (args.offset * args.connections + c) * stride, deadline,
                   latencies, starts, statuses, errors)
        for c in range(args.connections)])
    elapsed = time.perf_counter() - t0
    np.save(args.out, np.array(latencies))
    if args.starts:
        np.save(args.starts, np.array(starts))
    return {"requests": len(latencies), "statuses": {str(k): v for k, v in statuses.items()},
            "errors": dict(errors), "elapsed": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--bodies", required=True, help="one JSON request body per line")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--offset", type=int, default=0, help="this process's number (spreads start positions)")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--starts", help="also save each request's start (Unix time, seconds) here, as .npy")
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        print(json.dumps(asyncio.run(run(args))))
    else:
        print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
