"""The console's risk workbench: product versions under maker-checker, what-if simulations, monitoring.

Every step goes through the very functions the API's routes call (`api.http.routers.products` and
`api.http.routers.monitoring`, hence `ProductVersions` and the simulation runner): the console holds no
lifecycle rule of its own. A refusal (the store's bilingual message, a definition's field errors) is shown
on the page it came from, with the API's status."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.http.deps import RISK_ROLES
from api.http.errors import ProblemError
from api.http.routers import monitoring as monitoring_api
from api.http.routers import products as products_api
from api.http.ui.i18n import pick, texts
from api.http.ui.routes import PageExit, Session, _lang, check_csrf, render, session_of
from api.monitoring.report import alert_summary
from api.workbench.store import ProductVersionError, ProductVersions, diff_definitions
from api.workbench.tables import simulation_jobs
from products.schema import ProductDefinition

router = APIRouter(prefix="/ui/risk", include_in_schema=False)
SIMULATION_ROWS = 50
MAX_DEFINITION = 200_000  # characters of a pasted definition


def _store(request: Request) -> ProductVersions:
    return ProductVersions(request.app.state.engine)


def _problem_message(error: ProblemError) -> dict[str, Any]:
    """What a page shows of a refusal: the API's detail and its field errors (already bilingual)."""
    fields = [{"field": e.get("field"), "message": e.get("message"), "message_zh": e.get("message_zh")}
              for e in (error.errors or [])]
    return {"status": error.status, "detail": error.detail, "fields": fields}


def _not_found(request: Request, session: Session, detail: str) -> PageExit:
    t = texts(_lang(request))
    return PageExit(render(request, "error.html", 404, session, heading=t["version_not_found"], detail=detail))


# ------------------------------------------------------------------ product versions

@router.get("/products")
def products_page(request: Request) -> HTMLResponse:
    return _products(request, session_of(request, *RISK_ROLES))


def _products(request: Request, session: Session, status: int = 200, refusal: dict[str, Any] | None = None,
              values: dict[str, str] | None = None) -> HTMLResponse:
    lang = _lang(request)
    store = _store(request)
    names = {d.code: pick(d.name.model_dump(), lang) for d in store.seeds}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for entry in store.history():
        grouped.setdefault(entry["code"], []).append(entry)
    return render(request, "risk_products.html", status, session, products=grouped, names=names,
                  section="products", refusal=refusal, values=values or {},
                  may_draft=session.principal.role in products_api.DRAFT_ROLES)


@router.post("/products")
def draft_version(request: Request, csrf: Annotated[str, Form(max_length=128)] = "",
                  definition: Annotated[str, Form(max_length=MAX_DEFINITION)] = "",
                  note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    session = session_of(request, *products_api.DRAFT_ROLES)
    check_csrf(request, session, csrf)
    values = {"definition": definition, "note": note}
    try:
        data = yaml.safe_load(definition) if definition.strip() else None
    except yaml.YAMLError as error:
        data = None
        problem = str(error).splitlines()[0]
    else:
        problem = ""
    if not isinstance(data, dict):
        t = texts(_lang(request))
        refusal = {"status": 422, "detail": t["bad_definition"],
                   "fields": [{"field": "definition", "message": problem or t["bad_definition"]}]}
        return _products(request, session, 422, refusal, values)
    try:
        body = products_api.DraftBody(definition=data, note=note.strip() or None)
        record = products_api.draft_version(body, request, Response(), session.principal)
    except ProblemError as error:
        return _products(request, session, error.status, _problem_message(error), values)
    return RedirectResponse(f"/ui/risk/products/{record['id']}", status_code=303)


def _summary(d: ProductDefinition, lang: str) -> list[tuple[str, str]]:
    t = texts(lang)
    limit, rate = d.limit, d.rate
    return [(t["product"], f"{pick(d.name.model_dump(), lang)} ({d.code})"), (t["version"], d.version),
            (t["effective_date"], d.effective_date.isoformat()), (t["collateral"], d.collateral),
            (t["limit_range"], f"{limit.min_cny:,.0f} – {limit.max_cny:,.0f}"),
            (t["rate_band"], f"{rate.floor:.2f}% – {rate.ceiling:.2f}%"),
            (t["scale"], f"{d.scale:g}"), (t["max_pd"], f"{d.max_pd:.2%}"),
            (t["valid_days"], str(d.quote_valid_days)), (t["gates"], str(len(d.gates))),
            (t["dimensions"], ", ".join(f"{pick(v.name.model_dump(), lang)} {v.weight:g}"
                                        for v in d.dimensions.values()))]


def _diff(store: ProductVersions, version_id: int) -> dict[str, Any]:
    """The /diff endpoint's answer against the active version, or its refusal (nothing in force yet)."""
    try:
        return store.diff(version_id, "active")
    except ProductVersionError as error:
        return {"against": None, "changes": [], "refusal": error.message}


def _version_page(request: Request, session: Session, version_id: int, status: int = 200,
                  refusal: dict[str, Any] | None = None) -> HTMLResponse:
    lang = _lang(request)
    store = _store(request)
    try:
        store.get(version_id)
        definition = store.definition(version_id)
    except ProductVersionError as error:
        raise _not_found(request, session, error.message) from None
    entry = next(e for e in store.history(definition.code) if e["id"] == version_id)
    role = session.principal.role
    actions = {"submit": entry["status"] == "draft" and role in products_api.DRAFT_ROLES,
               "approve": entry["status"] == "submitted" and role in products_api.DECIDE_ROLES,
               "reject": entry["status"] in ("draft", "submitted") and role in products_api.DECIDE_ROLES}
    return render(request, "risk_version.html", status, session, section="products", entry=entry,
                  summary=_summary(definition, lang), diff=_diff(store, version_id), actions=actions,
                  refusal=refusal, may_simulate=True)


@router.get("/products/{version_id}")
def version_page(request: Request, version_id: int = products_api.VersionId) -> HTMLResponse:
    session = session_of(request, *RISK_ROLES)
    return _version_page(request, session, version_id)


@router.get("/products/seed/{code}/{version}")
def seed_page(request: Request, code: str, version: str) -> HTMLResponse:
    """A seed version (a packaged or configured file): its summary and its changes against the active one."""
    session = session_of(request, *RISK_ROLES)
    lang = _lang(request)
    store = _store(request)
    seed = next((s for s in store.seeds if s.code == code and s.version == version), None)
    if seed is None:
        raise _not_found(request, session, f"{code} {version}")
    entry = next(e for e in store.history(code) if e["origin"] == "seed" and e["version"] == version)
    try:
        active = store.active(code, dt.date.today())
        diff = {"against": f"active {active.code} v{active.version}", "changes": diff_definitions(active, seed)}
    except ProductVersionError as error:
        diff = {"against": None, "changes": [], "refusal": error.message}
    return render(request, "risk_version.html", 200, session, section="products", entry=entry,
                  summary=_summary(seed, lang), diff=diff, actions={}, refusal=None, may_simulate=False)


def _decide(request: Request, version_id: int, action: str, csrf: str, reason: str) -> Response:
    roles = products_api.DRAFT_ROLES if action == "submit" else products_api.DECIDE_ROLES
    session = session_of(request, *roles)
    check_csrf(request, session, csrf)
    try:
        if action == "submit":
            products_api.submit_version(request, version_id, session.principal)
        elif action == "approve":
            body = products_api.DecisionBody(reason=reason.strip() or None)
            products_api.approve_version(request, body, version_id, session.principal)
        elif not reason.strip():  # the API's body requires a reason; the store says so in both languages
            _store(request).reject(version_id, session.principal.name, reason)
        else:
            products_api.reject_version(products_api.RejectBody(reason=reason), request, version_id,
                                        session.principal)
    except ProductVersionError as error:
        if error.status == 404:
            raise _not_found(request, session, error.message) from None
        return _version_page(request, session, version_id, error.status,
                             _problem_message(products_api._problem(error)))
    except ProblemError as error:
        if error.status == 404:
            raise _not_found(request, session, error.detail) from None
        return _version_page(request, session, version_id, error.status, _problem_message(error))
    return RedirectResponse(f"/ui/risk/products/{version_id}", status_code=303)


@router.post("/products/{version_id}/submit")
def submit_version(request: Request, version_id: int = products_api.VersionId,
                   csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    return _decide(request, version_id, "submit", csrf, "")


@router.post("/products/{version_id}/approve")
def approve_version(request: Request, version_id: int = products_api.VersionId,
                    csrf: Annotated[str, Form(max_length=128)] = "",
                    reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    return _decide(request, version_id, "approve", csrf, reason)


@router.post("/products/{version_id}/reject")
def reject_version(request: Request, version_id: int = products_api.VersionId,
                   csrf: Annotated[str, Form(max_length=128)] = "",
                   reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    return _decide(request, version_id, "reject", csrf, reason)


# ------------------------------------------------------------------ simulations

def _simulations(request: Request, session: Session, status: int = 200, refusal: dict[str, Any] | None = None,
                 values: dict[str, str] | None = None) -> HTMLResponse:
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(sa.select(simulation_jobs).order_by(simulation_jobs.c.created_at.desc())
                            .limit(SIMULATION_ROWS)).all()
    jobs = [{**products_api._view(r).model_dump(), "request": json.loads(r.request_json)} for r in rows]
    versions = [e for e in _store(request).history() if e["origin"] == "store"]
    chosen = {"as_of": dt.date.today().isoformat(), **(values or {})}
    return render(request, "risk_simulations.html", status, session, section="simulations", jobs=jobs,
                  versions=versions, refusal=refusal, values=chosen)


@router.get("/simulations")
def simulations_page(request: Request, version: Annotated[str, Query(max_length=12)] = "") -> HTMLResponse:
    return _simulations(request, session_of(request, *RISK_ROLES), values={"version_id": version})


@router.post("/simulations")
def start_simulation(request: Request, csrf: Annotated[str, Form(max_length=128)] = "",
                     version_id: Annotated[str, Form(max_length=12)] = "",
                     as_of: Annotated[str, Form(max_length=10)] = "") -> Response:
    session = session_of(request, *RISK_ROLES)
    check_csrf(request, session, csrf)
    values = {"version_id": version_id, "as_of": as_of}
    t = texts(_lang(request))
    try:
        chosen = int(version_id)
        if not 1 <= chosen <= 2**31 - 1:
            raise ValueError(version_id)
    except ValueError:
        refusal = {"status": 422, "detail": t["bad_request"],
                   "fields": [{"field": "version_id", "message": t["no_versions"]}]}
        return _simulations(request, session, 422, refusal, values)
    try:
        day = dt.date.fromisoformat(as_of) if as_of.strip() else None
    except ValueError:
        refusal = {"status": 422, "detail": t["bad_date"], "fields": [{"field": "as_of", "message": t["bad_date"]}]}
        return _simulations(request, session, 422, refusal, values)
    try:
        job = products_api.start_simulation(products_api.SimulationBody(version_id=chosen, as_of=day), request,
                                            Response(), session.principal)
    except ProblemError as error:
        return _simulations(request, session, error.status, _problem_message(error), values)
    return RedirectResponse(f"/ui/risk/simulations/{job.job_id}", status_code=303)


def _job(request: Request, session: Session, job_id: str) -> products_api.SimulationView:
    try:
        return products_api.get_simulation(request, job_id[:64], session.principal)
    except ProblemError as error:
        t = texts(_lang(request))
        raise PageExit(render(request, "error.html", 404, session, heading=t["not_found"],
                              detail=error.detail)) from None


@router.get("/simulations/{job_id}")
def simulation_page(request: Request, job_id: str) -> HTMLResponse:
    session = session_of(request, *RISK_ROLES)
    job = _job(request, session, job_id)
    with request.app.state.engine.connect() as conn:
        asked = json.loads(conn.execute(sa.select(simulation_jobs.c.request_json)
                                        .where(simulation_jobs.c.job_id == job.job_id)).scalar_one())
    return render(request, "risk_simulation.html", 200, session, section="simulations", job=job, asked=asked,
                  running=job.status in ("queued", "running"))


@router.get("/simulations/{job_id}/report")
def simulation_report(request: Request, job_id: str) -> Response:
    session = session_of(request, *RISK_ROLES)
    _job(request, session, job_id)
    try:
        report = products_api.simulation_report(request, job_id[:64], session.principal)
    except ProblemError as error:
        t = texts(_lang(request))
        heading = t["not_found"] if error.status in (404, 410) else t["error"]  # 409: not finished yet
        return render(request, "error.html", error.status, session, heading=heading, detail=error.detail)
    report.headers["Content-Security-Policy"] = "sandbox"  # a generated document: its scripts never run
    return report


# ------------------------------------------------------------------ monitoring

@router.get("/monitoring")
def monitoring_page(request: Request,
                    reference: Annotated[str, Query(pattern=monitoring_api.SPEC_PATTERN)] = "champion",
                    current: Annotated[str, Query(pattern=monitoring_api.SPEC_PATTERN)] = "quotes") -> HTMLResponse:
    session = session_of(request, *RISK_ROLES)
    try:
        report = monitoring_api.monitoring(request, reference, current, session.principal)
    except ProblemError as error:
        t = texts(_lang(request))
        return render(request, "error.html", error.status, session, heading=t["error"], detail=error.detail)
    if isinstance(report, Response):  # 202: computed in the background; the page refreshes until it is there
        return render(request, "risk_monitoring.html", 202, session, section="monitoring", report=None,
                      computing=True, query={"reference": reference, "current": current})
    # the challenger comparison as `GET /v1/monitoring/shadow` gives it now (the report may be minutes old)
    comparison = monitoring_api.shadow_comparison(request, None, None, session.principal)
    alerts = [a for a in report["alerts"] if not str(a.get("subject", "")).startswith("challenger:")]
    alerts += comparison.get("alerts", [])
    report = {**report, "shadow": comparison, **alert_summary(alerts)}
    return render(request, "risk_monitoring.html", 200, session, section="monitoring", report=report,
                  shadow=comparison, computing=False, query={"reference": reference, "current": current})
