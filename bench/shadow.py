"""Benchmark the challenger in shadow: what it costs the quote path, and its own throughput.

    .venv/bin/python bench/shadow.py [--firms 1200] [--quotes 300]

A fresh SQLite store with the synthetic region, a small champion and a small challenger (LightGBM, holdout,
60 rounds). Then, through the real app (FastAPI TestClient, the writer thread, the shadow thread):
  * POST /v1/quotes latency, one request at a time, without a challenger and with one (the shadow thread
    scores beside the requests, on the same cores);
  * the shadow scorer's cost per quote when it scores groups of 1, 16, 64 and 256 issued quotes.
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/shadow.py`, this folder comes first on sys.path and its http.py would shadow the
# standard library's `http` package: drop it, and put the repository first.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def _model(engine, directory: Path, seed: int, champion: bool) -> str:  # noqa: ANN001
    from training.config import SelectionConfig, load_config
    from training.datasets import from_store
    from training.pipeline import train_pipeline
    from training.registry import Registry

    cfg = dataclasses.replace(load_config(), selection=SelectionConfig(), validation="holdout", num_boost_round=60,
                              seed=seed)
    result = train_pipeline(from_store(engine=engine, config=cfg), cfg, directory / f"m{seed}", operator="bench",
                            write_report=False)
    registry = Registry(engine)
    record = registry.register(result.out_dir, created_by="bench", reason="bench")
    registry.request_promotion(record.id, "challenger", "bench", "bench")
    if champion:
        registry.request_promotion(record.id, "champion", "bench", "bench")
        registry.approve(record.id, "bench-approver", "bench")
    return record.id


def _latencies(client, headers, codes: list[str]) -> list[float]:  # noqa: ANN001
    out = []
    for code in codes:
        start = time.perf_counter()
        response = client.post("/v1/quotes", json={"credit_code": code}, headers=headers)
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 201, response.text
    return out


def _summary(values: list[float]) -> str:
    values = sorted(values)
    return (f"p50 {statistics.median(values):.2f} ms, p95 {values[int(0.95 * (len(values) - 1))]:.2f} ms, "
            f"mean {statistics.fmean(values):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--firms", type=int, default=1200)
    parser.add_argument("--quotes", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from api.database import migrate
    from api.http.app import create_app
    from api.keys import Role, create_key
    from features.ingest import ingest_directory
    from features.synthetic import generate_region, write_region
    from training.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_region(generate_region(args.firms, 11), directory / "region", "parquet")
        url = f"sqlite:///{directory / 'store.db'}"
        engine = migrate(url)
        assert ingest_directory(engine, directory / "region", directory / "quarantine").ok
        _model(engine, directory, 5, champion=True)
        key = create_key(engine, Role.loan_officer, "bench-officer")
        headers = {"Authorization": f"Bearer {key}"}
        import sqlalchemy as sa

        with engine.connect() as conn:
            codes = conn.execute(sa.text("SELECT DISTINCT credit_code FROM src_registry ORDER BY credit_code")
                                 ).scalars().all()
        picks = [codes[(i * 7919) % len(codes)] for i in range(args.quotes)]
        with TestClient(create_app(database_url=url, models_dir=str(directory / "models"))) as client:
            service = client.app.state.quoting
            _latencies(client, headers, picks[:50])  # warm: the day's blocks are computed
            challenger = _model(engine, directory, 9, champion=False)
            scorer = service.shadow
            scorer._challengers = (-float("inf"), [])  # re-read the registry now
            _latencies(client, headers, picks[:50])  # warm: the challenger's blocks are computed
            assert scorer.flush(120)
            # rounds alternate (the machine is shared: load drifts), the shadow switched off and on for the
            # quoter (issue() takes `service.shadow` per quote)
            without, with_challenger, lags = [], [], []
            for _ in range(args.rounds):
                service.shadow = None
                without += _latencies(client, headers, picks)
                service.shadow = scorer
                with_challenger += _latencies(client, headers, picks)
                done = time.perf_counter()
                assert scorer.flush(120)
                lags.append(time.perf_counter() - done)
            print(f"POST /v1/quotes, {args.rounds} x {args.quotes} sequential requests per case, {args.firms} firms")
            print(f"  no challenger:  {_summary(without)}")
            print(f"  one challenger: {_summary(with_challenger)}  (shadow rows all stored at most "
                  f"{max(lags):.3f} s after a round's last response)")

            # the scorer's own cost per quote by group size (quotes issued, not stored)
            import datetime as dt
            import json

            from api.keys import Principal
            from api.quoting.issuing import QuoteOrder, issue

            principal = Principal(1, "bench-officer", Role.loan_officer)
            orders = [QuoteOrder(c, dt.date.today(), service.products_for(dt.date.today(), None), None, None,
                                 json.dumps({"credit_code": c}), None, principal) for c in picks[:256]]
            issued = [issue(service, o) for o in orders]
            assert Registry(engine).get(challenger).stage == "challenger"
            scorer = service.shadow
            print("shadow scoring per quote (score_rows with the challenger, no SHAP; rows handed to the writer):")
            scorer.score(issued)  # warm: blocks scored
            assert scorer.flush(120)
            with engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM shadow_scores"))
            for label, batch in (("population blocks (warm)", issued),
                                 ("from snapshots", [dataclasses.replace(i, population=None) for i in issued])):
                for size in (1, 16, 64, 256):
                    scorer._recent_set.clear()
                    scorer._recent.clear()
                    start = time.perf_counter()
                    for i in range(0, len(batch), size):
                        scorer.score(batch[i:i + size])
                    per = (time.perf_counter() - start) / len(batch) * 1000
                    print(f"  {label}, groups of {size:>3}: {per:.3f} ms per quote")
                    assert scorer.flush(120)
                    with engine.begin() as conn:  # the same quotes again next time
                        conn.execute(sa.text("DELETE FROM shadow_scores"))


if __name__ == "__main__":
    main()
