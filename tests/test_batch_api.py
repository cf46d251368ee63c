"""POST /v1/batch/precredit: a job run by the batch worker process the service starts, followed and
downloaded; risk roles only; bad input is a 4xx problem document. On SQLite and PostgreSQL. Quotas, cancel,
the concurrency limit and leases: tests/test_batch_limits.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from api.keys import Role
from api.precredit.inputs import build_context
from api.precredit.run import RunOptions, run_precredit
from api.tables import batch_jobs
from features.store import audit
from features.store.load import load_features
from tests.api_support import Service, running_service
from tests.conftest import settings_env


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def svc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp(f"batch-api-{request.param}")
    with settings_env(batch_dir=str(directory / "jobs")), running_service(request.param, directory) as service:
        yield service


def _wait(svc: Service, job_id: str, role: Role = Role.risk_analyst, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = svc.client.get(f"/v1/batch/precredit/{job_id}", headers=svc.headers(role)).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_a_job_runs_in_the_background_and_its_file_downloads(svc: Service, tmp_path: Path) -> None:
    as_of = dt.date.today()
    started = svc.client.post("/v1/batch/precredit", json={"reasons": 2, "partitions": 3, "as_of": as_of.isoformat()},
                              headers=svc.headers(Role.risk_analyst))
    assert started.status_code == 202, started.text
    job = started.json()
    assert started.headers["location"] == f"/v1/batch/precredit/{job['job_id']}"
    assert job["status"] in ("queued", "running", "succeeded") and job["requested_by"] == "test-risk_analyst"
    assert dt.datetime.fromisoformat(job["created_at"]).tzinfo is not None
    done = _wait(svc, job["job_id"], Role.risk_approver)  # any risk role may follow it
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == {"partitions_done": 3, "partitions_total": 3}
    assert done["summary"]["enterprises"] == len(svc.codes) == done["result_rows"]

    result = svc.client.get(done["result_url"], headers=svc.headers(Role.admin))
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/vnd.apache.parquet"
    assert hashlib.sha256(result.content).hexdigest() == done["result_sha256"] == result.headers["x-content-sha256"]
    frame = pd.read_parquet(io.BytesIO(result.content))
    assert list(frame["credit_code"]) == sorted(svc.codes)
    assert {"tax_credit.eligible", "per_mu.reasons_zh", "two_healthy.top_reason_2_en"} <= set(frame.columns)

    # the same run by hand on the same store gives the same bytes
    features = load_features(None, as_of, engine=svc.engine)
    ctx, describe, narrowed = build_context(features, as_of, None, 2, None)
    by_hand = run_precredit(ctx, narrowed, describe, RunOptions(tmp_path / "by-hand.parquet", partitions=3))
    assert by_hand.summary["output"]["sha256"] == done["result_sha256"]

    with svc.engine.connect() as conn:
        actions = conn.execute(sa.select(audit.audit_log.c.action).where(
            audit.audit_log.c.subject == f"batch:{job['job_id']}").order_by(audit.audit_log.c.seq)).scalars().all()
        assert actions == ["batch.precredit.request", "batch.precredit.finish", "batch.precredit.download"]
        assert audit.verify(conn).ok
        stored = conn.execute(sa.select(batch_jobs).where(batch_jobs.c.job_id == job["job_id"])).one()
        assert stored.status == "succeeded" and stored.result_sha256 == done["result_sha256"]
    # run outside the process serving requests: by the worker process the service started
    assert int(stored.worker.split(":")[1]) != os.getpid()


def test_csv_jobs_and_product_subsets(svc: Service) -> None:
    started = svc.client.post("/v1/batch/precredit", json={"products": ["per_mu"], "format": "csv"},
                              headers=svc.headers(Role.admin))
    assert started.status_code == 202, started.text
    done = _wait(svc, started.json()["job_id"])
    assert done["status"] == "succeeded", done["error"]
    result = svc.client.get(done["result_url"], headers=svc.headers(Role.risk_analyst))
    assert result.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(result.text), dtype={"credit_code": str})
    assert len(frame) == len(svc.codes) and {c.split(".")[0] for c in frame.columns if "." in c} == {"per_mu"}
    assert list(done["summary"]["products"]) == ["per_mu"]


@pytest.mark.parametrize("role", [Role.loan_officer, Role.platform])
def test_only_risk_roles(svc: Service, role: Role) -> None:
    response = svc.client.post("/v1/batch/precredit", json={}, headers=svc.headers(role))
    assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    assert svc.client.get("/v1/batch/precredit/x", headers=svc.headers(role)).status_code == 403
    assert svc.client.get("/v1/batch/precredit/x/result", headers=svc.headers(role)).status_code == 403
    assert svc.client.post("/v1/batch/precredit", json={}).status_code == 401


@pytest.mark.parametrize(("body", "field"), [
    ({"products": ["tax_credit", "nope"]}, "products"),
    ({"products": []}, "products"),
    ({"reasons": -1}, "reasons"),
    ({"reasons": 11}, "reasons"),
    ({"reasons": False}, "reasons"),
    ({"reasons": "3"}, "reasons"),
    ({"format": "xlsx"}, "format"),
    ({"engine": "spark"}, "engine"),
    ({"partitions": 0}, "partitions"),
    ({"as_of": (dt.date.today() + dt.timedelta(days=1)).isoformat()}, "as_of"),
    ({"as_of": "2025-02-30"}, "as_of"),
    ({"as_of": 0}, "as_of"),
    ({"scheduler": "tcp://10.0.0.1:8786"}, "scheduler"),
])
def test_bad_input_is_a_field_level_problem(svc: Service, body: dict, field: str) -> None:
    with svc.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(batch_jobs)).scalar_one()
    response = svc.client.post("/v1/batch/precredit", json=body, headers=svc.headers(Role.risk_analyst))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in problem["errors"]] == [field]
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batch_jobs)).scalar_one() == before


def test_unknown_job_and_unfinished_result(svc: Service) -> None:
    missing = svc.client.get("/v1/batch/precredit/no-such-job", headers=svc.headers(Role.risk_analyst))
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert svc.client.get("/v1/batch/precredit/no-such-job/result",
                          headers=svc.headers(Role.risk_analyst)).status_code == 404
    from api.precredit.jobs import PrecreditRequest

    uncovered = dt.date.today() - dt.timedelta(days=3650)  # before any product or data: refused at the door
    refused = svc.client.post("/v1/batch/precredit", json={"as_of": uncovered.isoformat()},
                              headers=svc.headers(Role.risk_analyst))
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "as_of"
    # a job queued before its date stopped being covered (or by another process) fails cleanly when it runs
    job_id = svc.client.app.state.batch_jobs.submit(PrecreditRequest(uncovered, None, 0, "parquet", "local", None),
                                                    1, "test")
    done = _wait(svc, job_id)
    assert done["status"] == "failed" and "no enterprises" in done["error"]
    result = svc.client.get(f"/v1/batch/precredit/{done['job_id']}/result", headers=svc.headers(Role.risk_analyst))
    assert result.status_code == 409 and "failed" in result.json()["detail"]
