"""FastAPI application factory: routers, problem-JSON errors, metrics, the loan officer's page."""

from __future__ import annotations

import importlib.resources
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.http import errors, logs
from api.http.lifecycle import Starter, Unavailable
from api.http.limits import Limits, runtime_dir
from api.http.middleware import LimitsAndMetrics
from api.http.routers import audit, batch, catalogue, enterprises, health, monitoring, overrides, quotes, whitelists
from api.http.routers import keys as key_routes
from api.http.routers import products as product_versions  # before catalogue: /v1/products/versions vs /{code}
from api.http.ui import routes as ui
from features.settings import get_settings
from features.store.db import StoreUnavailableError, connect
from products.catalogue import load_catalogue

STATIC_DIR = Path(__file__).resolve().parent / "static"
SWAGGER_UI_DIR = Path(str(importlib.resources.files("fastapi_offline") / "static"))  # swagger-ui-bundle.js, .css
MAX_BODY_BYTES = 64 * 1024  # the default of settings.max_body_bytes

DESCRIPTION = """Quotes for Wenzhou's index-based loans (科创指数贷, 税收信用指数贷, 亩均信用贷, "两个健康"积分贷,
新乡贤指数贷): eligibility, index and grade, tier, limit, rate band, fees, subsidies, PD and explanations.
Authenticate with `Authorization: Bearer <API key>`. Errors are RFC 9457 problem documents."""


def create_app(database_url: str | None = None, models_dir: str | None = None) -> FastAPI:
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        logs.configure()
        engine = connect(database_url or settings.resolved_database_url)  # lazy: connects on first use
        app.state.engine = engine
        app.state.models_dir = models_dir
        app.state.key_cache = {}
        app.state.limits = Limits(runtime_dir(engine.url.render_as_string(hide_password=False)))
        # Until the starter has brought them up (at once, or retried in the background while the database
        # or the risk model is unavailable), the parts answer 503; /healthz and /metrics need neither.
        starting = StoreUnavailableError("the service is starting")
        app.state.quoting = Unavailable("the quoting service", starting, definitions=list(load_catalogue().values()))
        app.state.batch_jobs = Unavailable("the batch runner", starting)
        starter = Starter(app, engine, models_dir)
        starter.start()
        yield
        starter.stop()
        app.state.limits.close()

    # /docs is served below from bundled Swagger UI files (FastAPI's own page loads them from a CDN and
    # starts them with an inline script); no /redoc (a CDN too).
    app = FastAPI(title="indexloan", version="0.1.0", description=DESCRIPTION, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    errors.install(app)

    app.add_middleware(LimitsAndMetrics)  # body limit (settings.max_body_bytes), rate limits, headers, deadline

    for router in (health.router, quotes.router, product_versions.router, catalogue.router, enterprises.router,
                   audit.router, batch.router, whitelists.router, monitoring.router, overrides.router):
        app.include_router(router)
    app.include_router(key_routes.router)  # key revocation (admins)
    app.mount("/docs/assets", StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html")

    ui.mount(app)  # the console (/ui; `/` redirects there)

    return app
