"""Batch jobs bounded (issue 14): per-key quotas and a bounded queue (429 / 503 with Retry-After, in English
and Chinese), cancel (owner or admin; nothing of a cancelled run is kept or can be published), a global
concurrency limit over every worker, leases (a killed worker's jobs are taken over, at most the limit at a
time, a bounded number of times). On SQLite and PostgreSQL, with real worker threads and processes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.keys import Role, create_key
from api.precredit.jobs import JobStore, PrecreditRequest, Worker
from api.tables import batch_jobs
from features.store import audit
from tests.api_support import Service, running_service
from tests.conftest import settings_env

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"products": ["per_mu"], "partitions": 3}
LIMITS = ("batch_max_running", "batch_max_queued", "batch_max_active_per_key", "batch_max_per_key_per_day")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def svc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with no batch worker of its own (batch_worker=separate): jobs wait until a test runs one."""
    directory = tmp_path_factory.mktemp(f"batch-limits-{request.param}")
    with (settings_env(batch_dir=str(directory / "jobs"), batch_worker="separate", batch_poll_seconds="0.1",
                       batch_max_per_key_per_day="1000"),  # the daily quota has a test of its own
          running_service(request.param, directory) as service):
        yield service


@pytest.fixture(autouse=True)
def _no_jobs_left(svc: Service) -> Iterator[None]:
    """Each test starts with no job queued or running (quotas count them)."""
    yield
    with svc.engine.begin() as conn:
        conn.execute(batch_jobs.update().where(batch_jobs.c.status.in_(("queued", "running")))
                     .values(status="failed", error="left by a test"))


def _key_id(svc: Service, role: Role) -> int:
    with svc.engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM api_keys WHERE name = :n"),
                            {"n": f"test-{role.value}"}).scalar_one()


def _jobs(svc: Service) -> int:
    with svc.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(batch_jobs)).scalar_one()


def _start(svc: Service, role: Role = Role.risk_analyst, body: dict | None = None):  # noqa: ANN202
    return svc.client.post("/v1/batch/precredit", json=body or SMALL, headers=svc.headers(role))


def _row(svc: Service, job_id: str) -> sa.Row:
    with svc.engine.connect() as conn:
        return conn.execute(sa.select(batch_jobs).where(batch_jobs.c.job_id == job_id)).one()


def _wait(svc: Service, job_ids: list[str], statuses: tuple[str, ...] = ("succeeded",), timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = [_row(svc, j) for j in job_ids]
        if all(r.status in statuses for r in rows):
            return
        assert time.monotonic() < deadline, [(r.status, r.error) for r in rows]
        assert not [r for r in rows if r.status == "failed" and "failed" not in statuses], [r.error for r in rows]
        time.sleep(0.05)


@contextlib.contextmanager
def worker(svc: Service, name: str | None = None) -> Iterator[Worker]:
    """A batch worker in a thread of this process (the service's batch dir), stopped on the way out."""
    from features.settings import get_settings

    w = Worker(svc.engine, None, get_settings().resolved_batch_dir, name=name)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        yield w
    finally:
        w.stop()
        thread.join(120)


class Sampler:
    """Counts, every few milliseconds, the jobs holding a live lease (status running, lease in the future)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.live: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = dt.datetime.now(dt.UTC)
            with self.svc.engine.connect() as conn:
                rows = conn.execute(sa.select(batch_jobs.c.lease_expires_at)
                                    .where(batch_jobs.c.status == "running")).scalars().all()
            self.live.append(sum(1 for lease in rows if lease is not None
                                 and (lease if lease.tzinfo else lease.replace(tzinfo=dt.UTC)) >= now))
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# ------------------------------------------------------------------ quotas and the bounded queue


def _refused(response, status: int) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    problem = response.json()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in problem["detail"]), problem  # Chinese
    assert any(word in problem["detail"] for word in ("batch", "queue")), problem  # and English
    return problem


def test_a_key_over_its_active_quota_gets_429_and_nothing_is_queued(svc: Service) -> None:
    with settings_env(batch_max_active_per_key="2"):
        first, second = _start(svc), _start(svc)
        assert first.status_code == second.status_code == 202, (first.text, second.text)
        before = _jobs(svc)
        problem = _refused(_start(svc), 429)
        assert "2" in problem["detail"] and problem["errors"][0]["field"] == "quota"
        assert _jobs(svc) == before  # nothing recorded
        assert _start(svc, Role.risk_approver).status_code == 202  # the quota is per key
        # a cancelled job no longer counts
        assert svc.client.post(f"/v1/batch/precredit/{first.json()['job_id']}/cancel",
                               headers=svc.headers(Role.risk_analyst)).status_code == 200
        assert _start(svc).status_code == 202


def test_a_key_over_its_daily_quota_gets_429_until_midnight_utc(svc: Service) -> None:
    started_today = _jobs_today(svc, _key_id(svc, Role.admin))
    with settings_env(batch_max_per_key_per_day=str(started_today + 1), batch_max_active_per_key="100"):
        job = _start(svc, Role.admin)
        assert job.status_code == 202, job.text
        svc.client.post(f"/v1/batch/precredit/{job.json()['job_id']}/cancel", headers=svc.headers(Role.admin))
        response = _start(svc, Role.admin)  # cancelled or not, a started job counts for the day
        _refused(response, 429)
        now = dt.datetime.now(dt.UTC)
        to_midnight = (dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC) - now).total_seconds()
        assert abs(int(response.headers["Retry-After"]) - to_midnight) <= 5


def _jobs_today(svc: Service, key_id: int) -> int:
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with svc.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(batch_jobs).where(
            batch_jobs.c.api_key_id == key_id, batch_jobs.c.created_at >= midnight)).scalar_one()


def test_a_full_queue_answers_503_with_retry_after(svc: Service) -> None:
    with settings_env(batch_max_queued="2", batch_max_active_per_key="100"):
        assert _start(svc, Role.risk_analyst).status_code == 202
        assert _start(svc, Role.risk_approver).status_code == 202
        before = _jobs(svc)
        problem = _refused(_start(svc, Role.admin), 503)
        assert problem["errors"][0]["field"] == "queue" and _jobs(svc) == before


def test_concurrent_requests_cannot_pass_the_quota_together(svc: Service) -> None:
    """The count and the insert are one serialised transaction: 12 requests at once, a quota of 3. A key of
    its own: the module's other tests leave jobs of the shared keys active for as long as the machine is slow."""
    store = JobStore(svc.engine)
    create_key(svc.engine, Role.risk_analyst, "test-quota-race")
    with svc.engine.connect() as conn:
        key_id = conn.execute(sa.text("SELECT id FROM api_keys WHERE name = 'test-quota-race'")).scalar_one()
    outcomes: list[str] = []
    # the queue's overall limit lifted: jobs the module's other tests left queued must not take this test's places
    with settings_env(batch_max_active_per_key="3", batch_max_queued="1000"):
        def one() -> None:
            try:
                store.submit(PrecreditRequest(dt.date.today(), ["per_mu"], 0, "parquet", "local", 1), key_id, "t")
                outcomes.append("queued")
            except Exception as error:  # noqa: BLE001 - counted below
                outcomes.append(type(error).__name__)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert outcomes.count("queued") == 3 and outcomes.count("JobRefused") == 9, outcomes


# ------------------------------------------------------------------ cancel


def test_cancel_is_for_the_owner_or_an_admin(svc: Service) -> None:
    job_id = _start(svc).json()["job_id"]
    url = f"/v1/batch/precredit/{job_id}/cancel"
    other = svc.client.post(url, headers=svc.headers(Role.risk_approver))  # a risk role, but not the owner
    assert other.status_code == 403 and "只有" in other.json()["detail"]
    assert svc.client.post(url, headers=svc.headers(Role.loan_officer)).status_code == 403
    assert svc.client.post(url).status_code == 401
    assert svc.client.post("/v1/batch/precredit/no-such-job/cancel",
                           headers=svc.headers(Role.admin)).status_code == 404
    cancelled = svc.client.post(url, headers=svc.headers(Role.admin))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_requested_by"] == "test-admin"
    again = svc.client.post(url, headers=svc.headers(Role.risk_analyst))  # changes nothing
    assert again.status_code == 200 and again.json()["cancel_requested_by"] == "test-admin"
    assert svc.client.get(f"/v1/batch/precredit/{job_id}/result",
                          headers=svc.headers(Role.risk_analyst)).status_code == 409
    with svc.engine.connect() as conn:
        actions = conn.execute(sa.select(audit.audit_log.c.action).where(
            audit.audit_log.c.subject == f"batch:{job_id}").order_by(audit.audit_log.c.seq)).scalars().all()
    assert actions == ["batch.precredit.request", "batch.precredit.cancel", "batch.precredit.finish"]
    with worker(svc):  # a worker never starts a cancelled job
        time.sleep(1.0)
    assert _row(svc, job_id).status == "cancelled" and _row(svc, job_id).started_at is None


def test_cancel_stops_a_running_job_and_nothing_of_it_is_kept_or_published(svc: Service) -> None:
    from features.settings import get_settings

    batch_dir = get_settings().resolved_batch_dir
    with settings_env(batch_throttle_seconds="0.4"), worker(svc):
        job_id = _start(svc, body={"partitions": 12}).json()["job_id"]
        deadline = time.monotonic() + 120
        while (_row(svc, job_id).partitions_done or 0) < 2:
            assert time.monotonic() < deadline and _row(svc, job_id).status in ("queued", "running")
            time.sleep(0.05)
        assert list((batch_dir / f"{job_id}.parts").glob("part-*.arrow"))  # partitions on disk
        response = svc.client.post(f"/v1/batch/precredit/{job_id}/cancel", headers=svc.headers(Role.risk_analyst))
        assert response.status_code == 200 and response.json()["status"] == "running"  # stops after a partition
        assert response.json()["cancel_requested_by"] == "test-risk_analyst"
        _wait(svc, [job_id], ("cancelled",), 60)
        row = _row(svc, job_id)
        assert row.partitions_done < 12 and row.result_path is None and row.result_sha256 is None
        assert row.summary_json is None and row.finished_at is not None
        # nothing of the run left behind: no partitions, no output, no summary, no temporary file
        assert sorted(p.name for p in batch_dir.iterdir() if job_id in p.name) == []
        # nothing to download or publish
        assert svc.client.get(f"/v1/batch/precredit/{job_id}/result",
                              headers=svc.headers(Role.risk_analyst)).status_code == 409
        proposed = svc.client.post("/v1/whitelists", json={"job_id": job_id}, headers=svc.headers(Role.risk_analyst))
        assert proposed.status_code == 409 and "cancelled" in proposed.json()["detail"], proposed.text
        # the worker goes on with the next job
        next_id = _start(svc).json()["job_id"]
        _wait(svc, [next_id])
    with svc.engine.connect() as conn:
        finish = conn.execute(sa.select(audit.audit_log.c.detail_json).where(
            audit.audit_log.c.subject == f"batch:{job_id}", audit.audit_log.c.action == "batch.precredit.finish")
        ).scalars().all()
    assert [json.loads(d)["status"] for d in finish] == ["cancelled"]


def test_cli_cancel(svc: Service) -> None:
    job_id = _start(svc).json()["job_id"]
    url = svc.engine.url.render_as_string(hide_password=False)
    done = _cli("batch", "cancel", job_id, "--by", "ops", "--database-url", url)
    assert done.returncode == 0 and "cancelled" in done.stdout, done.stderr
    assert _row(svc, job_id).status == "cancelled" and _row(svc, job_id).cancel_requested_by == "ops"
    again = _cli("batch", "cancel", "no-such-job", "--by", "ops", "--database-url", url)
    assert again.returncode == 1 and "no batch job" in again.stderr


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INDEXLOAN_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "api.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**base, **(env or {})})


# ------------------------------------------------------------------ the concurrency limit and leases


def test_the_concurrency_limit_holds_over_several_workers(svc: Service) -> None:
    with (settings_env(batch_max_running="2", batch_max_active_per_key="10", batch_throttle_seconds="0.3"),
          Sampler(svc) as sampler, worker(svc, "w1"), worker(svc, "w2"), worker(svc, "w3")):
        ids = [_start(svc).json()["job_id"] for _ in range(5)]
        _wait(svc, ids)
    assert max(sampler.live) == 2, sampler.live  # the limit is reached, never passed
    with svc.engine.connect() as conn:
        for job_id in ids:  # each job ran once
            finishes = conn.execute(sa.select(sa.func.count()).select_from(audit.audit_log).where(
                audit.audit_log.c.subject == f"batch:{job_id}", audit.audit_log.c.action == "batch.precredit.finish")
            ).scalar_one()
            assert finishes == 1
        assert audit.verify(conn).ok


def test_a_stopped_worker_puts_its_job_back_and_the_next_resumes_it(svc: Service) -> None:
    with settings_env(batch_throttle_seconds="0.5"):
        with worker(svc):
            job_id = _start(svc, body={"partitions": 12}).json()["job_id"]
            deadline = time.monotonic() + 120
            while (_row(svc, job_id).partitions_done or 0) < 2:
                assert time.monotonic() < deadline and _row(svc, job_id).status in ("queued", "running")
                time.sleep(0.05)
        row = _row(svc, job_id)  # stopped mid-run: queued again, lease released
        assert row.status == "queued" and row.worker is None and row.lease_expires_at is None
    with worker(svc):
        _wait(svc, [job_id])
    summary = json.loads(_row(svc, job_id).summary_json)
    assert summary["run"]["reused_partitions"] >= 2 and summary["enterprises"] == len(svc.codes)
    assert _row(svc, job_id).retries == 0  # a clean stop is not a take-over


def test_after_a_killed_worker_at_most_the_limit_resumes_and_each_job_once(svc: Service) -> None:
    """kill -9 of a worker process running three jobs; a new worker with a limit of one takes them over one at
    a time once their leases expire (never three at once), each resumed from its partitions."""
    from features.settings import get_settings

    url = svc.engine.url.render_as_string(hide_password=False)
    env = {"INDEXLOAN_BATCH_MAX_RUNNING": "3", "INDEXLOAN_BATCH_THROTTLE_SECONDS": "1.0",
           "INDEXLOAN_BATCH_LEASE_SECONDS": "3", "INDEXLOAN_BATCH_POLL_SECONDS": "0.1",
           "INDEXLOAN_BATCH_MAX_ACTIVE_PER_KEY": "10"}
    with settings_env(batch_max_active_per_key="10"):
        ids = [_start(svc, body={"products": ["per_mu"], "partitions": 6}).json()["job_id"] for _ in range(3)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("INDEXLOAN_")}
    proc = subprocess.Popen([sys.executable, "-m", "api.cli.main", "batch", "worker", "--database-url", url,
                             "--batch-dir", str(get_settings().resolved_batch_dir)],
                            env={**base, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not all((_row(svc, j).partitions_done or 0) >= 1 for j in ids):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, [_row(svc, j).status for j in ids]
            time.sleep(0.05)
        assert {_row(svc, j).worker.split(":")[1] for j in ids} == {str(proc.pid)}  # run by that process
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert [_row(svc, j).status for j in ids] == ["running"] * 3  # as the dead worker left them
    time.sleep(3.5)  # its leases expire: from now on a live lease is one the new worker holds
    with (settings_env(batch_max_running="1", batch_lease_seconds="3", batch_throttle_seconds="0.2"),
          Sampler(svc) as sampler, worker(svc)):
        _wait(svc, ids)
    assert max(sampler.live) == 1, sampler.live
    for job_id in ids:
        row = _row(svc, job_id)
        assert row.retries == 1, row.retries
        assert json.loads(row.summary_json)["run"]["reused_partitions"] >= 1


def test_a_job_whose_workers_keep_dying_is_failed_with_the_reason(svc: Service) -> None:
    store = JobStore(svc.engine)
    key_id = _key_id(svc, Role.risk_analyst)
    request = PrecreditRequest(dt.date.today(), ["per_mu"], 0, "parquet", "local", 1)
    doomed, again = store.submit(request, key_id, "t"), store.submit(request, key_id, "t")
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    with svc.engine.begin() as conn:  # what two dead workers leave: running, leases expired
        conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == doomed)
                     .values(status="running", worker="gone:1", lease_expires_at=expired, retries=2))
        conn.execute(batch_jobs.update().where(batch_jobs.c.job_id == again)
                     .values(status="running", worker="gone:2", lease_expires_at=expired, retries=1))
    with settings_env(batch_max_retries="2"):
        claimed = Worker(svc.engine, name="next").claim()
    assert claimed == again and _row(svc, again).retries == 2 and _row(svc, again).worker == "next"
    row = _row(svc, doomed)
    assert row.status == "failed" and "3 times" in row.error and "given up" in row.error, row.error
    with svc.engine.connect() as conn:
        detail = conn.execute(sa.select(audit.audit_log.c.detail_json).where(
            audit.audit_log.c.subject == f"batch:{doomed}", audit.audit_log.c.action == "batch.precredit.finish")
        ).scalar_one()
    assert json.loads(detail)["status"] == "failed"
