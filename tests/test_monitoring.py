"""Monitoring (issue 12): PSI against a hand computation, data-feed health, thresholds, CLI and API."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli.main import app as cli
from api.keys import Role
from api.monitoring.config import ThresholdsError, load_thresholds, parse_thresholds
from api.monitoring.report import build_report
from api.quoting.service import ModelChoice, Quoter
from features.store.tables import source_table
from tests.api_support import Service, running_service
from tests.conftest import settings_env
from tests.live_server import private_batch_dir
from tests.monitoring_support import monitoring_report, quick_model
from training import metrics

DEMO_DATE = "2025-12-31"  # the demo region's latest as-of date


def test_psi_matches_a_hand_computation() -> None:
    # bins at the reference's median 2.5: reference 2 | 2, current 3 | 1
    expected = np.array([1.0, 2.0, 3.0, 4.0])
    actual = np.array([1.0, 1.0, 1.0, 4.0])
    hand = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert metrics.psi(expected, actual, bins=2) == pytest.approx(hand, abs=1e-12)
    assert metrics.psi(expected, expected, bins=2) == 0.0


def test_psi_gives_missing_values_a_bin_of_their_own() -> None:
    expected = np.array([1.0, 2.0, 3.0, 4.0])
    actual = np.array([1.0, np.nan, 4.0, 4.0])  # bins: 1/4, 2/4, missing 1/4 (reference: none, floored)
    eps = metrics.EPS
    hand = ((0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - 0.5) * 0.0
            + (0.25 - eps) * math.log(0.25 / eps))
    assert metrics.psi(expected, actual, bins=2) == pytest.approx(hand, rel=1e-12)


def test_a_stored_reference_gives_the_same_psi_as_the_sample() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(500, 2))
    reference[::7, 1] = np.nan
    current = rng.normal(0.3, 1.2, size=(300, 2))
    stored = metrics.feature_reference(reference, ["a", "b"])
    for j, name in enumerate(["a", "b"]):
        assert metrics.psi_against(stored[name], current[:, j]) == pytest.approx(
            metrics.psi(reference[:, j], current[:, j]), rel=1e-12)
    pds = rng.uniform(0, 0.1, 400)
    assert metrics.psi_against(metrics.score_reference(pds), pds[:200]) == pytest.approx(
        metrics.psi(pds, pds[:200]), rel=1e-12)


def _hand_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI written out: decile edges of the reference, counts per bin, sum (a - e) ln(a / e)."""
    finite = reference[np.isfinite(reference)]
    edges = sorted(set(np.quantile(finite, [k / 10 for k in range(1, 10)]).tolist()))
    total = 0.0
    for lo, hi in zip([-math.inf, *edges], [*edges, math.inf], strict=True):
        e = max(float(np.mean((reference >= lo) & (reference < hi))), metrics.EPS)
        a = max(float(np.mean((current >= lo) & (current < hi))), metrics.EPS)
        total += (a - e) * math.log(a / e)
    return total


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("monitoring")
    with private_batch_dir(directory / "batch"), running_service(
            "sqlite", directory, prepare=lambda engine: quick_model(engine, directory, 5, "champion")) as service:
        yield service


@pytest.fixture(scope="module")
def quoted(svc: Service) -> list[dict]:
    """Quotes for every third enterprise (issued today: the `quotes` sample)."""
    bodies = []
    for code in svc.codes[::3]:
        response = svc.client.post("/v1/quotes", json={"credit_code": code}, headers=svc.headers(Role.loan_officer))
        assert response.status_code == 201, response.text
        bodies.append(response.json())
    return bodies


def test_report_psi_of_indices_pd_and_inputs_match_a_hand_computation(svc: Service, quoted: list[dict]) -> None:
    service = svc.client.app.state.quoting
    report = build_report(service, DEMO_DATE, "quotes", load_thresholds())
    rows = {(r["kind"], r["name"]): r for r in report["psi"]}
    assert report["current"]["rows"] == len(quoted)
    # reference: the whole population as of the demo date, through the quote's path (quote one firm in three
    # of it and the rest must agree): computed here from the population's quotes, one by one
    import datetime as dt

    day = dt.date.fromisoformat(DEMO_DATE)
    population = service.state(day).population
    products = service.products_for(day, None)
    reference = {p: [] for p in products}
    reference_pd = []
    for code in population.frame.index:
        body = population.body(code, products, None)
        for q in body["quotes"]:
            reference[q["product"]].append(q["index"])
        reference_pd.append(body["risk"]["pd"])
    for product in products:
        current = np.array([q["index"] for b in quoted for q in b["quotes"] if q["product"] == product])
        hand = _hand_psi(np.array(reference[product]), current)
        assert rows[("index", product)]["psi"] == pytest.approx(hand, abs=1e-9), product
    current_pd = np.array([b["risk"]["pd"] for b in quoted])
    assert rows[("pd", "pd")]["psi"] == pytest.approx(_hand_psi(np.array(reference_pd), current_pd), abs=1e-9)
    model = service.model()
    assert {n for k, n in rows if k == "feature"} == set(model.feature_names)
    # a sample against itself is stable
    same = build_report(service, DEMO_DATE, DEMO_DATE, load_thresholds())
    assert all(r["psi"] == 0.0 for r in same["psi"] if r["psi"] is not None)


def test_the_champion_reference_is_its_development_sample(svc: Service, quoted: list[dict]) -> None:
    service = svc.client.app.state.quoting
    report = build_report(service, "champion", "quotes", load_thresholds())
    model = service.model()
    stored = model.metadata["score_reference"]
    pd = np.array([b["risk"]["pd"] for b in quoted])
    edges = np.asarray(stored["edges"])
    counts = np.bincount(np.searchsorted(edges, pd, side="right"), minlength=len(edges) + 1) / len(pd)
    e, a = np.maximum(np.asarray(stored["shares"]), metrics.EPS), np.maximum(counts, metrics.EPS)
    row = next(r for r in report["psi"] if r["kind"] == "pd")
    assert row["psi"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))), abs=1e-12)
    assert all(r["psi"] is None for r in report["psi"] if r["kind"] == "index")  # a model sample has no index
    assert sum(r["psi"] is not None for r in report["psi"] if r["kind"] == "feature") == len(model.feature_names)


def _feed_alerts(report: dict, source: str) -> list[dict]:
    return [a for a in report["alerts"] if a["kind"].startswith("feed") and a.get("source") == source]


def test_emptying_a_feed_raises_an_alert_naming_that_source(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path) as service:
        quoter = Quoter(service.engine, model=ModelChoice(use_model=False))
        before = build_report(quoter, DEMO_DATE, DEMO_DATE, load_thresholds())
        assert not [a for a in before["alerts"] if a["kind"].startswith("feed")], before["alerts"]
        with service.engine.begin() as conn:
            conn.execute(sa.delete(source_table("electricity")))
        after = build_report(Quoter(service.engine, model=ModelChoice(use_model=False)), DEMO_DATE, DEMO_DATE,
                             load_thresholds())
        alerts = _feed_alerts(after, "electricity")
        kinds = {a["kind"] for a in alerts}
        assert {"feed_coverage", "feed_age"} <= kinds
        coverage = next(a for a in alerts if a["kind"] == "feed_coverage")
        assert coverage["figures"]["coverage"] == 0.0 and coverage["figures"]["covered"] == 0
        assert "electricity" in coverage["en"] and "electricity" in coverage["zh"] and "电力公司" in coverage["zh"]
        others = [a for a in after["alerts"] if a["kind"].startswith("feed") and a.get("source") != "electricity"]
        assert not others, others
        feed = next(f for f in after["feeds"]["sources"] if f["source"] == "electricity")
        assert feed["latest_as_of"] is None and feed["covered"] == 0

        # thresholds come from the configured file, per source and per product
        path = tmp_path / "thresholds.yaml"
        path.write_text("feeds:\n  sources:\n    electricity: {min_coverage: 0.0}\n"
                        "psi:\n  products:\n    tax_credit: {warn: 0.0, alert: 0.0}\n", encoding="utf-8")
        with settings_env(monitoring_thresholds_file=str(path)):
            tuned = build_report(quoter, DEMO_DATE, DEMO_DATE, load_thresholds())
        assert {a["kind"] for a in _feed_alerts(tuned, "electricity")} == {"feed_age"}  # no data at all still is
        psi_alerts = [a["subject"] for a in tuned["alerts"] if a["kind"].startswith("psi")]
        assert psi_alerts == ["index:tax_credit"]


def test_invalid_thresholds_are_refused_with_their_path(tmp_path: Path) -> None:
    with pytest.raises(ThresholdsError, match=r"psi\.products\.per_mu"):
        parse_thresholds({"psi": {"products": {"per_mu": {"warn": 0.3, "alert": 0.2}}}}, "t.yaml")
    with pytest.raises(ThresholdsError, match="feeds.sources.tax.min_coverage"):
        parse_thresholds({"feeds": {"sources": {"tax": {"min_coverage": 1.5}}}}, "t.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("psi: {colour: red}\n", encoding="utf-8")
    with settings_env(monitoring_thresholds_file=str(bad)), pytest.raises(ThresholdsError, match="bad.yaml"):
        load_thresholds()


def test_monitor_command_writes_the_report_and_refuses_bad_options(svc: Service, quoted: list[dict],
                                                                   tmp_path: Path) -> None:
    url = svc.engine.url.render_as_string(hide_password=False)
    out = tmp_path / "report.html"
    runner = CliRunner()
    result = runner.invoke(cli, ["monitor", "--reference", DEMO_DATE, "--current", "quotes", "--out", str(out),
                                 "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["current"]["rows"] == len(quoted) and report["psi"] and report["feeds"]["sources"]
    page = out.read_text(encoding="utf-8")
    assert "Population stability" in page and "数据源健康" in page
    for bad, field in (("2999-01-01", "--current"), ("quotes:2025-02-01", "--current")):
        result = runner.invoke(cli, ["monitor", "--current", bad, "--database-url", url])
        assert result.exit_code == 2 and field in result.output, result.output
    result = runner.invoke(cli, ["monitor", "--reference", "2020-01-01", "--current", DEMO_DATE,
                                 "--database-url", url])
    assert result.exit_code == 2 and "--reference" in result.output, result.output


def test_monitoring_endpoint_and_gauges(svc: Service, quoted: list[dict]) -> None:
    first = svc.client.get("/v1/monitoring", params={"reference": DEMO_DATE}, headers=svc.headers(Role.risk_analyst))
    assert first.status_code == 202 and first.headers["Retry-After"]  # computed in the background
    response = monitoring_report(svc, {"reference": DEMO_DATE})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["reference"]["kind"] == "period" and report["current"]["kind"] == "quotes"
    assert report["current"]["rows"] == len(quoted)
    again = svc.client.get("/v1/monitoring", params={"reference": DEMO_DATE}, headers=svc.headers(Role.risk_analyst))
    assert again.status_code == 200 and again.json()["computed_at"] == report["computed_at"]  # the cached one
    bad = monitoring_report(svc, {"reference": "2020-01-01", "current": DEMO_DATE})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "reference"
    future = svc.client.get("/v1/monitoring", params={"current": "2999-01-01"}, headers=svc.headers(Role.admin))
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "current"  # at once
    assert svc.client.get("/v1/monitoring", headers=svc.headers(Role.loan_officer)).status_code == 403
    metrics_text = svc.client.get("/metrics").text
    tax = next(f for f in report["feeds"]["sources"] if f["source"] == "tax")
    assert f'indexloan_feed_coverage_ratio{{source="tax"}} {tax["coverage"]}' in metrics_text
    pd_row = next(r for r in report["psi"] if r["kind"] == "pd")
    assert f'indexloan_monitoring_psi{{kind="pd",name="pd"}} {pd_row["psi"]}' in metrics_text


def test_a_batch_run_is_a_sample_with_the_populations_figures(svc: Service, tmp_path: Path) -> None:
    """A pre-credit run as of the demo date against the population on that date, read by monitoring:
    the same enterprises through the same path, so every index and the PD are perfectly stable."""
    import time

    started = svc.client.post("/v1/batch/precredit", json={"format": "parquet", "partitions": 2, "as_of": DEMO_DATE},
                              headers=svc.headers(Role.risk_analyst))
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    deadline = time.monotonic() + 180
    while (job := svc.client.get(f"/v1/batch/precredit/{job_id}", headers=svc.headers(Role.risk_analyst)).json()
           )["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    response = monitoring_report(svc, {"reference": DEMO_DATE, "current": f"job:{job_id}"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["current"]["kind"] == "run" and report["current"]["rows"] == len(svc.codes)
    checked = [r for r in report["psi"] if r["kind"] in ("index", "pd")]
    assert len(checked) == 6 and all(r["psi"] == 0.0 for r in checked), checked
    assert all(r["psi"] is None for r in report["psi"] if r["kind"] == "feature")  # a run has no model inputs
    unknown = monitoring_report(svc, {"current": "job:" + "0" * 36})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "current"
    not_a_run = tmp_path / "other.csv"
    not_a_run.write_text("a,b\n1,2\n", encoding="utf-8")
    url = svc.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["monitor", "--current", str(not_a_run), "--database-url", url])
    assert result.exit_code == 2 and "--current" in result.output, result.output


def test_bin_shares_count_as_searchsorted_bins_them() -> None:
    """`bin_shares` counts by one comparison per edge; the bins are `searchsorted(edges, v, "right")`'s
    (left-closed), infinities in the first and last bins, NaN in the missing bin, exactly."""
    from training import metrics as tm

    rng = np.random.default_rng(5)
    for n in (0, 1, 7, 1000, 5000):
        values = rng.choice([np.nan, np.inf, -np.inf, 0.0, 1.0, 2.5, 3.0], size=n)
        values[: n // 2] = rng.normal(size=n // 2)
        for edges in (tm.bin_edges(values), np.array([0.0, 1.0, 2.5]), np.zeros(0)):
            finite = values[~np.isnan(values)]
            expected = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
            shares = tm.bin_shares(edges, values)
            assert shares.tobytes() == (np.r_[expected, np.isnan(values).sum()] / max(n, 1)).tobytes()
