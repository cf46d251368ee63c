"""The bare baselines for bench/http.py: FastAPI apps that only explain one enterprise's row (SHAP values /
per-feature contributions). No products, storage, audit, roles or reasons.

    INDEXLOAN_DATA_DIR=DIR uvicorn bench.bare_app:app --workers N            # our champion model
    uvicorn bench.bare_app:reference --workers N                              # the reference model

`app` answers with the registry's champion, whatever its family (`RiskModel.contributions`: TreeSHAP for
LightGBM, points for a scorecard, their weighted sum for a blend); today's features are encoded once at
start-up, so a request is a row lookup plus one contributions call.

`reference` answers `pred_contrib` of the REFERENCE model: the shape a risk team gets from LightGBM's
defaults, 200 trees x 31 leaves on 30 numeric features (bench/reference.py, the one reference model of every bench);
a request looks up one of its 20,000 synthetic rows by the body's credit code (any code: hashed to a row).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import zlib
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class Request(BaseModel):
    credit_code: str


@cache
def champion() -> tuple[Any, np.ndarray, dict[str, int]]:
    from features.store.db import connect
    from features.store.load import load_features
    from training.registry import Registry

    engine = connect()
    model = Registry(engine).load()
    population = load_features(None, dt.date.today(), engine=engine)
    return model, model.encode(population), {code: i for i, code in enumerate(population.index)}


@cache
def reference_model() -> tuple[Any, np.ndarray]:
    """(booster, rows): bench/reference.py's model, kept in $BENCH_REFERENCE_DIR (bench/http.py trains it once
    for all workers), and rows of its synthetic features to explain."""
    from bench.reference import reference_model as trained
    from bench.reference import synthetic_rows

    cache_dir = os.environ.get("BENCH_REFERENCE_DIR")
    return trained(cache=Path(cache_dir) if cache_dir else None), synthetic_rows(20_000, seed=15)


@contextlib.asynccontextmanager
async def _champion_loaded(_: FastAPI) -> AsyncIterator[None]:
    champion()  # before the worker accepts requests
    yield


app = FastAPI(lifespan=_champion_loaded)


@app.post("/score")
def score(body: Request) -> dict:
    model, matrix, rows = champion()
    i = rows.get(body.credit_code)
    if i is None:
        raise HTTPException(404, "unknown enterprise")
    contrib = model.contributions(matrix[i:i + 1])[0]
    return {"credit_code": body.credit_code, "shap": contrib[:-1].tolist(), "base_value": float(contrib[-1])}


@contextlib.asynccontextmanager
async def _reference_trained(_: FastAPI) -> AsyncIterator[None]:
    reference_model()
    yield


reference = FastAPI(lifespan=_reference_trained)


@reference.post("/score")
def reference_score(body: Request) -> dict:
    booster, X = reference_model()
    i = zlib.crc32(body.credit_code.encode("utf-8")) % len(X)
    contrib = booster.predict(X[i:i + 1], pred_contrib=True, num_threads=1)[0]
    return {"credit_code": body.credit_code, "shap": contrib[:-1].tolist(), "base_value": float(contrib[-1])}
