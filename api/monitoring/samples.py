"""What monitoring compares: a reference and a current sample of product indices, PDs and model inputs.

A sample is one of
- `champion` (reference only): the development sample the champion model was trained on, as the decile
  bins it recorded for its PD (`score_reference`) and each input (`feature_reference`, models trained since
  issue 12); it has no product indices;
- a date `YYYY-MM-DD`: the store's whole population as of that date, scored through the quote's one path
  (`api.quoting.population.score_rows` under `Quoter.state`);
- `quotes` or `quotes:FROM:TO`: the quotes issued on those days (default: the last
  `settings.monitoring_quote_days`), their stored indices and PDs and the model inputs of their snapshots;
- a pre-credit batch run: its output file (`*.parquet`, `*.csv`; CLI) or `job:<job id>` (a finished API batch
  job): every row's product indices and PD (a run file holds no model inputs).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from api.quoting.population import score_rows
from api.quoting.service import Quoter
from api.quoting.snapshot import features_from_json_rows
from api.quoting.versions import VersionsError
from api.tables import batch_jobs, quotes
from features.settings import get_settings
from training.serving import RiskModel


class SampleError(ValueError):
    """A sample cannot be built: `field` names the option at fault (reference or current)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Sample:
    label: str
    kind: str  # champion | period | quotes
    rows: int
    indices: dict[str, np.ndarray] = field(default_factory=dict)  # product -> index per row
    pd: np.ndarray | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)  # model input -> encoded value per row
    stored_bins: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # "pd", "feature:<name>"
    as_of: dt.date | None = None  # a period's date (feed health is measured on it)


@dataclass(frozen=True)
class SampleSpec:
    kind: str
    as_of: dt.date | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    path: Path | None = None  # a batch run's output file
    job_id: str | None = None  # or the API batch job that wrote it

    def describe(self) -> str:
        if self.kind == "period":
            return f"population as of {self.as_of}"
        if self.kind == "quotes":
            return f"quotes issued {self.since} to {self.until}"
        if self.kind == "run":
            return f"batch run {self.job_id or self.path}"
        return "the champion's development sample"


def _date(text: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SampleError(where, f"{text!r} is not a date (YYYY-MM-DD)") from None


def parse_spec(text: str, where: str, today: dt.date | None = None) -> SampleSpec:
    """`champion`, `YYYY-MM-DD`, `quotes` or `quotes:FROM:TO`; SampleError naming `where` otherwise."""
    text = (text or "").strip()
    today = today or dt.date.today()
    if text == "champion":
        return SampleSpec("champion")
    if text.startswith("job:"):
        return SampleSpec("run", job_id=text[4:])
    if text.endswith((".parquet", ".csv")):
        return SampleSpec("run", path=Path(text))
    if text == "quotes" or text.startswith("quotes:"):
        parts = text.split(":")[1:]
        if parts and len(parts) != 2:
            raise SampleError(where, "quotes take two dates: quotes:FROM:TO")
        if parts:
            since, until = _date(parts[0], where), _date(parts[1], where)
        else:
            until = today
            since = until - dt.timedelta(days=get_settings().monitoring_quote_days - 1)
        if since > until:
            raise SampleError(where, f"quotes:{since}:{until}: the first date is after the second")
        return SampleSpec("quotes", since=since, until=until)
    day = _date(text, where)
    if day > today:
        raise SampleError(where, f"{day} is in the future")
    return SampleSpec("period", as_of=day)


def champion_sample(model: RiskModel | None) -> Sample:
    if model is None:  # nothing to compare with: every PSI is n/a, feeds and overrides are still reported
        return Sample("no champion model (compare two periods: --reference YYYY-MM-DD)", "champion", 0)
    meta = model.metadata
    bins: dict[str, dict[str, list[float]]] = {}
    if meta.get("score_reference"):
        bins["pd"] = meta["score_reference"]
    for name, ref in (meta.get("feature_reference") or {}).items():
        bins[f"feature:{name}"] = ref
    rows = int(meta.get("training", {}).get("rows") or 0)
    return Sample(f"development sample of model {model.model_version}", "champion", rows, stored_bins=bins)


def _model_inputs(model: RiskModel | None, X: np.ndarray | None) -> dict[str, np.ndarray]:
    if model is None or X is None:
        return {}
    return {name: X[:, j] for j, name in enumerate(model.feature_names)}


def period_sample(quoter: Quoter, as_of: dt.date) -> Sample:
    """The store's population as of a date, scored through the quote's path (no SHAP)."""
    state = quoter.state(as_of)
    scored = score_rows(state.versions, state.population.frame, contributions=False)
    indices = {code: r.index_cents / 100.0 for code, r in scored.results.items()}
    return Sample(f"population as of {as_of}", "period", len(state.population), indices, scored.pd,
                  _model_inputs(state.versions.model, scored.X), as_of=as_of)


def quotes_sample(engine: sa.Engine, model: RiskModel | None, since: dt.date, until: dt.date) -> Sample:
    """The latest `settings.monitoring_max_quotes` quotes created on days since..until (UTC)."""
    start = dt.datetime.combine(since, dt.time(), dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
    query = (sa.select(quotes.c.credit_code, quotes.c.response_json, quotes.c.snapshot_json)
             .where(quotes.c.created_at >= start, quotes.c.created_at < end)
             .order_by(quotes.c.created_at.desc()).limit(get_settings().monitoring_max_quotes))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    indices: dict[str, list[float]] = {}
    pds: list[float] = []
    for row in rows:
        body = json.loads(row.response_json)
        for q in body["quotes"]:
            indices.setdefault(q["product"], []).append(float(q["index"]))
        risk = body.get("risk")
        pds.append(np.nan if not risk else float(risk["pd"]))
    features: dict[str, np.ndarray] = {}
    if model is not None and rows:
        snapshots = [json.loads(r.snapshot_json)["features"] for r in rows]
        frame = features_from_json_rows([r.credit_code for r in rows], snapshots)
        features = _model_inputs(model, model.encode(frame))  # an input absent from a snapshot is missing
    pd_values = np.asarray(pds, dtype=np.float64)
    return Sample(f"{len(rows)} quotes issued {since} to {until}", "quotes", len(rows),
                  {k: np.asarray(v, dtype=np.float64) for k, v in indices.items()},
                  pd_values if np.isfinite(pd_values).any() else None, features)


def run_sample(engine: sa.Engine, spec: SampleSpec, where: str) -> Sample:
    """Product indices and PDs of a pre-credit run's output (`<product>.index`, `pd` columns)."""
    import pandas as pd

    path = spec.path
    if spec.job_id is not None:
        with engine.connect() as conn:
            job = conn.execute(sa.select(batch_jobs.c.status, batch_jobs.c.result_path)
                               .where(batch_jobs.c.job_id == spec.job_id)).first()
        if job is None or job.status != "succeeded" or not job.result_path:
            raise SampleError(where, f"batch job {spec.job_id} is unknown or has not succeeded")
        path = Path(job.result_path)
    assert path is not None
    def wanted(column: str) -> bool:  # only the indices and the PD (a whole region's run is wide)
        return column == "pd" or column.endswith(".index")

    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            frame = pd.read_parquet(path, columns=[c for c in pq.read_schema(path).names if wanted(c)])
        else:
            frame = pd.read_csv(path, usecols=wanted)
    except (OSError, ValueError) as error:
        raise SampleError(where, f"cannot read the batch run {path}: {error}") from None
    indices = {c[:-6]: frame[c].to_numpy(dtype=np.float64) for c in frame.columns if c.endswith(".index")}
    if not indices:
        raise SampleError(where, f"{path} is not a pre-credit run's output (no <product>.index column)")
    pd_values = frame["pd"].to_numpy(dtype=np.float64) if "pd" in frame.columns else None
    if pd_values is not None and not np.isfinite(pd_values).any():
        pd_values = None
    return Sample(f"batch run {spec.job_id or path.name} ({len(frame)} rows)", "run", len(frame), indices,
                  pd_values)


def build_sample(spec: SampleSpec, quoter: Quoter, where: str) -> Sample:
    if spec.kind == "champion":
        return champion_sample(quoter.model())
    if spec.kind == "period":
        assert spec.as_of is not None
        try:
            return period_sample(quoter, spec.as_of)
        except VersionsError as error:  # no product or rate in force then: the option is at fault
            raise SampleError(where, error.message) from None
    if spec.kind == "run":
        return run_sample(quoter.engine, spec, where)
    assert spec.since is not None and spec.until is not None
    return quotes_sample(quoter.engine, quoter.model(), spec.since, spec.until)


def describe(sample: Sample) -> dict[str, Any]:
    return {"label": sample.label, "kind": sample.kind, "rows": sample.rows,
            "as_of": None if sample.as_of is None else sample.as_of.isoformat()}
