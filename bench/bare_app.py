"""The bare baseline for bench/http.py: a FastAPI app that only runs the champion LightGBM model with
`pred_contrib` (SHAP values) on one enterprise's row. No products, storage, audit, roles or reasons.

    INDEXLOAN_DATA_DIR=DIR uvicorn bench.bare_app:app --workers N

Today's features are encoded once at start-up, so a request is a row lookup plus one predict call.
"""

from __future__ import annotations

import datetime as dt

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from features.store.db import connect
from features.store.load import load_features
from training.registry import Registry

engine = connect()
model = Registry(engine).load()
population = load_features(None, dt.date.today(), engine=engine)
matrix = model.encode(population)
rows = {code: i for i, code in enumerate(population.index)}
app = FastAPI()


class Request(BaseModel):
    credit_code: str


@app.post("/score")
def score(body: Request) -> dict:
    i = rows.get(body.credit_code)
    if i is None:
        raise HTTPException(404, "unknown enterprise")
    contrib = model.booster.predict(matrix[i:i + 1], pred_contrib=True, num_threads=1)[0]
    return {"credit_code": body.credit_code, "shap": contrib[:-1].tolist(), "base_value": float(contrib[-1])}
