"""Benchmark: the console's pages against the API's JSON for the same stored quote, in process.

    python -m bench.ui [--firms 1200] [--repeat 50]   (as a module: bench/http.py would shadow the stdlib)

Builds a seeded region in a temporary SQLite store with a champion model, signs in to the console, issues
quotes through the quote form, then times (median and p95 over --repeat) the stored quote page, its print
view, the history page and the replay check page, with `GET /v1/quotes/{id}` (the same stored quote as
JSON) as the baseline measured in the same run. Every page is rendered from the stored row, so the ratio
is the cost of the session look-up, the formatting and the SVG charts.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.database import migrate
from api.http.app import create_app
from api.keys import Role, create_key
from features.ingest import ingest_directory
from features.synthetic import generate_region, write_region
from tests.live_server import champion_in


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--firms", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        write_region(generate_region(args.firms, 11), directory / "region", "parquet")
        url = f"sqlite:///{directory}/bench.db"
        engine = migrate(url)
        ingest_directory(engine, directory / "region", directory / "quarantine")
        champion_in(directory / "models")(engine)
        key = create_key(engine, Role.loan_officer, "bench-ui")
        with engine.connect() as conn:
            code = conn.execute(sa.text("SELECT MIN(credit_code) FROM src_registry")).scalar_one()
        app = create_app(database_url=url, models_dir=str(directory / "models"))
        with TestClient(app, base_url="https://testserver") as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            login = client.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
            client.post("/ui/login", data={"api_key": key, "csrf": csrf})
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui").text).group(1)
            start = time.perf_counter()
            issued = client.post("/ui/quote", data={"csrf": csrf, "credit_code": code}, follow_redirects=False)
            first = (time.perf_counter() - start) * 1000
            quote_path = issued.headers["location"]
            quote_id = quote_path.rsplit("/", 1)[1]
            headers = {"Authorization": f"Bearer {key}"}
            rows = {
                "GET /v1/quotes/{id} (baseline)": lambda: client.get(f"/v1/quotes/{quote_id}", headers=headers),
                "quote page": lambda: client.get(quote_path),
                "print view": lambda: client.get(f"{quote_path}/print"),
                "history": lambda: client.get("/ui/history"),
                "quote page + replay check": lambda: client.get(f"{quote_path}?check=1"),
                "quote form post (issue, commit, redirect)": lambda: client.post(
                    "/ui/quote", data={"csrf": csrf, "credit_code": code}, follow_redirects=False),
            }
            print(f"first quote through the form: {first:.1f} ms")
            baseline = None
            for name, call in rows.items():
                median, p95 = timed(call, args.repeat)
                baseline = baseline or median
                print(f"{name:45s} median {median:7.2f} ms  p95 {p95:7.2f} ms  x{median / baseline:5.1f}")


if __name__ == "__main__":
    main()
