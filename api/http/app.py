"""FastAPI application factory: routers, problem-JSON errors, metrics, the loan officer's page."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.database import migrate
from api.http import errors
from api.http.middleware import LimitsAndMetrics
from api.http.routers import audit, batch, catalogue, enterprises, health, quotes
from api.precredit.jobs import JobRunner
from api.quoting.service import QuotingService
from features.settings import get_settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024

DESCRIPTION = """Quotes for Wenzhou's index-based loans (科创指数贷, 税收信用指数贷, 亩均信用贷, "两个健康"积分贷,
新乡贤指数贷): eligibility, index and grade, tier, limit, rate band, fees, subsidies, PD and explanations.
Authenticate with `Authorization: Bearer <API key>`. Errors are RFC 9457 problem documents."""


def create_app(database_url: str | None = None, models_dir: str | None = None) -> FastAPI:
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        engine = migrate(database_url or settings.resolved_database_url)
        app.state.engine = engine
        app.state.models_dir = models_dir
        app.state.key_cache = {}
        app.state.quoting = QuotingService(engine, models_dir)
        app.state.batch_jobs = JobRunner(engine, models_dir)  # batch runs: the app's worker thread, not requests
        app.state.batch_jobs.start()
        yield
        app.state.batch_jobs.stop()
        app.state.quoting.writer.stop()

    app = FastAPI(title="indexloan", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)

    app.add_middleware(LimitsAndMetrics, max_body_bytes=MAX_BODY_BYTES)

    for router in (health.router, quotes.router, catalogue.router, enterprises.router, audit.router, batch.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app
