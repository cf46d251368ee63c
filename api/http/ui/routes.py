"""The console's pages: sign-in, the quote page, history, and the risk pages.

Quotes are issued through the same core as `POST /v1/quotes` (the router's own order checks and issuing,
committed by the quoting service's writer before the page shows them) and every quote page is rendered
from the stored quote, never recomputed. What a role may see is the role's view of the stored body,
the one `GET /v1/quotes/{id}` answers with."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any

import jinja2
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from api.http.deps import RISK_ROLES
from api.http.errors import ProblemError
from api.http.ui import views
from api.http.ui.i18n import LANG_COOKIE, LANGS, ROLE_NAMES, lang_of, pick, texts, when
from api.http.ui.sessions import Session, SessionEnded, close_session, csrf_matches, find_session, open_session
from api.keys import Role, lookup
from api.tables import batch_jobs, quotes
from features.settings import get_settings

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "ilui_session"
LOGIN_COOKIE = "ilui_login"  # the sign-in form's CSRF token (double submit), before any session exists
HISTORY_ROWS = 50
AUDIT_ROLES = (Role.risk_approver, Role.admin)  # as GET /v1/audit/verify
QUOTE_ROLES = (Role.loan_officer, Role.platform, *RISK_ROLES)  # as POST /v1/quotes
OVERRIDE_ROLES = (Role.loan_officer,)  # as POST /v1/quotes/{id}/overrides
COLLATERAL = {"any": None, "unsecured": {"unsecured"}, "guaranteed": {"unsecured", "guaranteed"},
              "secured": {"unsecured", "guaranteed", "secured"}}  # what the firm offers -> products it opens

router = APIRouter(prefix="/ui", include_in_schema=False)
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True,
                          lstrip_blocks=True)


class PageExit(Exception):
    """Leave a page early with this response (a redirect to sign-in, a 403 page)."""

    def __init__(self, response: Response) -> None:
        super().__init__("page exit")
        self.response = response


def _lang(request: Request) -> str:
    return lang_of(request.cookies.get(LANG_COOKIE))


def _secure_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/ui", secure=True, httponly=True, samesite="strict")


def render(request: Request, template: str, status: int = 200, session: Session | None = None,
           **context: Any) -> HTMLResponse:
    lang = _lang(request)
    # the page to come back to after a language switch (a refused form post comes back as its empty form)
    here = "/ui"
    if request.method == "GET":
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    role = session.principal.role if session else None
    html = _env.get_template(template).render(
        t=texts(lang), lang=lang, other_lang="en" if lang == "zh" else "zh", here=here, session=session,
        role_name=pick(ROLE_NAMES[role.value], lang) if role else None,
        is_risk=role in RISK_ROLES if role else False, when=when, **context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _engine(request: Request) -> sa.Engine:
    return request.app.state.engine


def _to_sign_in(request: Request, reason: str) -> RedirectResponse:
    response = RedirectResponse(f"/ui/login?m={reason}", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui", secure=True, httponly=True, samesite="strict")
    return response


def session_of(request: Request, *roles: Role) -> Session:
    """The caller's live session (else a redirect to sign-in saying why) with one of `roles` (else a 403 page)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise PageExit(_to_sign_in(request, "in"))
    try:
        session = find_session(_engine(request), token)
    except SessionEnded:
        raise PageExit(_to_sign_in(request, "ended")) from None
    if roles and session.principal.role not in roles:
        lang = _lang(request)
        detail = texts(lang)["forbidden_detail"].format(
            role=pick(ROLE_NAMES[session.principal.role.value], lang),
            allowed=", ".join(pick(ROLE_NAMES[r.value], lang) for r in roles))
        raise PageExit(render(request, "error.html", 403, session, heading=texts(lang)["forbidden"], detail=detail))
    return session


def check_csrf(request: Request, session: Session, given: str) -> None:
    if not csrf_matches(session.csrf, given):
        raise PageExit(render(request, "error.html", 403, session, heading=texts(_lang(request))["csrf"], detail=""))


# ------------------------------------------------------------------ sign-in, sign-out, language

@router.get("/login")
def login_page(request: Request, m: str | None = None) -> HTMLResponse:
    return _login_form(request, {"ended": "session_ended", "bye": "signed_out"}.get(m or ""))


def _login_form(request: Request, message: str | None, status: int = 200, error: bool = False) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status, csrf=token, message=message, error=error)
    _secure_cookie(response, LOGIN_COOKIE, token, 30 * 60)
    return response


@router.post("/login")
def sign_in(request: Request, api_key: Annotated[str, Form(max_length=256)] = "",
            csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not csrf_matches(expected, csrf):
        return _login_form(request, "csrf", 403, error=True)
    key = api_key.strip()
    if not key:
        return _login_form(request, "need_key", 422, error=True)
    limits = request.app.state.limits
    address = request.client.host if request.client else "unknown"
    if limits.auth_blocked(address):
        return _login_form(request, "too_many", 429, error=True)
    with _engine(request).connect() as conn:
        principal = lookup(conn, key)
    if principal is None:
        limits.auth_failed(address)
        return _login_form(request, "bad_key", 401, error=True)
    token, expires = open_session(_engine(request), principal, get_settings().ui_session_minutes)
    response = RedirectResponse("/ui/risk/" if principal.role in RISK_ROLES else "/ui", status_code=303)
    seconds = max(1, int((expires - dt.datetime.now(dt.UTC)).total_seconds()))
    _secure_cookie(response, SESSION_COOKIE, token, seconds)
    response.delete_cookie(LOGIN_COOKIE, path="/ui", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/logout")
def sign_out(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    session = session_of(request)
    check_csrf(request, session, csrf)
    close_session(_engine(request), request.cookies[SESSION_COOKIE])
    return _to_sign_in(request, "bye")


@router.get("/lang/{lang}")
def switch_language(lang: str, request: Request, next: str = "/ui") -> Response:
    # Only a path inside the console: never an open redirect.
    target = next if next.startswith("/ui") and not next.startswith("//") and "\\" not in next else "/ui"
    response = RedirectResponse(target, status_code=303)
    if lang in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, path="/", samesite="strict", secure=True)
    return response


# ------------------------------------------------------------------ quoting

def _quote_form(request: Request, session: Session, status: int = 200, error: dict[str, Any] | None = None,
                values: dict[str, str] | None = None) -> HTMLResponse:
    return render(request, "quote_form.html", status, session, error=error, values=values or {},
                  form_id=str(uuid.uuid4()), collateral=list(COLLATERAL))


@router.get("")
def quote_page(request: Request) -> HTMLResponse:
    return _quote_form(request, session_of(request, *QUOTE_ROLES))


def _form_error(field: str, key: str, detail: str = "") -> dict[str, Any]:
    return {"field": field, "key": key, "detail": detail}


@router.post("/quote")
def issue_quote(request: Request, csrf: Annotated[str, Form(max_length=128)] = "",
                credit_code: Annotated[str, Form(max_length=64)] = "",
                amount: Annotated[str, Form(max_length=32)] = "",
                collateral: Annotated[str, Form(max_length=16)] = "any",
                consent_ref: Annotated[str, Form(max_length=128)] = "",
                form_id: Annotated[str, Form(max_length=64)] = "") -> Response:
    from api.http.quote_flow import QuoteRequest, answer, issue_checked, lookup, order_of
    from api.quoting.issuing import QuoteWrite
    from api.quoting.snapshot import canonical_json

    session = session_of(request, *QUOTE_ROLES)
    check_csrf(request, session, csrf)
    values = {"credit_code": credit_code, "amount": amount, "collateral": collateral, "consent_ref": consent_ref}

    def refuse(status: int, error: dict[str, Any]) -> HTMLResponse:
        return _quote_form(request, session, status, error, values)

    code = credit_code.strip().upper()
    requested: float | None = None
    if amount.strip():
        try:
            requested = float(amount.replace(",", "").strip())
        except ValueError:
            return refuse(422, _form_error("amount", "bad_amount"))
    if collateral not in COLLATERAL:
        return refuse(422, _form_error("collateral", "bad_request", f"unknown collateral {collateral!r}"))
    service = request.app.state.quoting
    products = None
    if COLLATERAL[collateral] is not None:
        from api.quoting.versions import definitions_in_force

        taken = COLLATERAL[collateral]
        products = [c for c, d in definitions_in_force(service.definitions, dt.date.today()).items()
                    if d.collateral in taken]
        if not products:
            return refuse(422, _form_error("collateral", "no_products"))
    try:
        body = QuoteRequest(credit_code=code, requested_amount_cny=requested, products=products,
                            consent_ref=consent_ref.strip() or None)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "credit_code"
        key = {"credit_code": "bad_code", "requested_amount_cny": "bad_amount"}.get(field, "bad_request")
        return refuse(422, _form_error({"requested_amount_cny": "amount"}.get(field, field), key,
                                       str(first["msg"]).removeprefix("Value error, ")))
    # A form sent twice issues one quote; the same form changed (the back button) is another request.
    request_hash = hashlib.sha256(canonical_json(body.model_dump(mode="json")).encode("utf-8")).hexdigest()
    idempotency = f"ui-{form_id}-{request_hash[:16]}" if form_id else None
    try:
        order = order_of(body, session.principal, service, idempotency)
        previous = lookup(service, session.principal, idempotency) if idempotency else None
        if previous is not None:
            return RedirectResponse(f"/ui/quotes/{previous.quote_id}", status_code=303)
        issued = issue_checked(service, order)
        failure: BaseException | None = None
        try:
            service.writer.submit(QuoteWrite(issued)).result()  # committed before it is shown
        except Exception as error:  # noqa: BLE001 - judged by the API's own `answer` below
            failure = error
        if isinstance(failure, sa.exc.IntegrityError) and idempotency:  # the same form, sent concurrently
            previous = lookup(service, session.principal, idempotency)
            if previous is not None:
                return RedirectResponse(f"/ui/quotes/{previous.quote_id}", status_code=303)
        # the API's bookkeeping of a write (readiness, metrics); a store failure is its 503, nothing shown
        answer(service, issued, failure, request.app.state)
    except ProblemError as error:
        field = error.errors[0]["field"] if error.errors else "credit_code"
        key = {404: "unknown_firm", 503: "unavailable"}.get(error.status, "bad_request")
        if field == "consent_ref":
            key = "platform_quote"
        return refuse(error.status, _form_error(field, key, error.detail))
    return RedirectResponse(f"/ui/quotes/{issued.values['quote_id']}", status_code=303)


def _stored(request: Request, session: Session, quote_id: str) -> tuple[sa.Row, dict[str, Any]]:
    """A stored quote and the role's view of its body (what GET /v1/quotes/{id} answers this role)."""
    principal = session.principal
    with _engine(request).connect() as conn:
        row = conn.execute(sa.select(quotes).where(quotes.c.quote_id == quote_id[:36])).first()
    if row is None or (principal.role is Role.platform and row.api_key_id != principal.key_id):
        lang = _lang(request)
        raise PageExit(render(request, "error.html", 404, session, heading=texts(lang)["not_found"],
                              detail=quote_id))
    body = json.loads(row.response_json)
    if principal.role is Role.platform:
        body = request.app.state.quoting.platform_view(body, row.as_of)
    return row, body


def _quote_context(request: Request, body: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    lang = _lang(request)
    t = texts(lang)
    definitions = request.app.state.quoting.definitions
    cards = [views.card(q, body, views.definition_of(definitions, q["product"], q.get("product_version")), lang, t)
             for q in body["quotes"]]
    cards.sort(key=lambda c: (not c["best"], not c["eligible"]))  # what the firm can get first (stable otherwise)
    best = body.get("best_offer")
    versions = snapshot.get("versions", {})
    return {"body": body, "summary": views.summary_rows(body, lang), "cards": cards,
            "best_name": pick(best.get("product_name"), lang) if best else None,
            "product_versions": [(code, info.get("version")) for code, info in versions.get("products", {}).items()],
            "rates_version": (versions.get("reference_rates") or {}).get("sha256", "")[:12]}


@router.get("/quotes/{quote_id}")
def quote_view(quote_id: str, request: Request, check: bool = False) -> HTMLResponse:
    session = session_of(request)
    row, body = _stored(request, session, quote_id)
    replay = _replay_check(request, session, quote_id) if check else None
    return _quote_view(request, session, row, body, 200, replay=replay)


def _quote_view(request: Request, session: Session, row: sa.Row, body: dict[str, Any], status: int,
                **context: Any) -> HTMLResponse:
    from api.monitoring import overrides

    role = session.principal.role
    recorded = overrides.for_quote(_engine(request), row.quote_id) if role is not Role.platform else []
    return render(request, "quote.html", status, session, overrides=recorded,
                  may_override=role in OVERRIDE_ROLES, **context,
                  **_quote_context(request, body, json.loads(row.snapshot_json)))


def _number(text: str) -> float | None:
    text = text.replace(",", "").strip()
    return float(text) if text else None


@router.post("/quotes/{quote_id}/overrides")
async def record_override(quote_id: str, request: Request, csrf: Annotated[str, Form(max_length=128)] = "",
                          product: Annotated[str, Form(max_length=64)] = "",
                          amount_cny: Annotated[str, Form(max_length=32)] = "",
                          rate: Annotated[str, Form(max_length=16)] = "",
                          reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """An officer's override, through POST /v1/quotes/{id}/overrides' own code (checks, bounds, audit)."""
    from api.http.routers.overrides import OverrideBody, create_override

    session = session_of(request, *OVERRIDE_ROLES)
    check_csrf(request, session, csrf)
    row, body = _stored(request, session, quote_id)
    values = {"product": product, "amount_cny": amount_cny, "rate": rate, "reason": reason}
    lang = _lang(request)

    def refuse(status: int, field: str, message: str) -> HTMLResponse:
        return _quote_view(request, session, row, body, status, override_error={"field": field, "message": message},
                           override_values=values)

    parsed: dict[str, float | None] = {}
    for field in ("amount_cny", "rate"):
        try:
            parsed[field] = _number(values[field])
        except ValueError:
            return refuse(422, field, texts(lang)["bad_number"])
    wanted = OverrideBody(product=product or None, amount_cny=parsed["amount_cny"], rate=parsed["rate"],
                          reason=reason)
    try:
        await create_override(row.quote_id, wanted, request, session.principal)
    except ProblemError as error:
        first = (error.errors or [{}])[0]
        message = first.get("message_zh") if lang == "zh" and first.get("message_zh") else first.get("message")
        return refuse(error.status, first.get("field", "reason"), message or error.detail)
    return RedirectResponse(f"/ui/quotes/{row.quote_id}#overrides", status_code=303)


@router.get("/quotes/{quote_id}/print")
def quote_print(quote_id: str, request: Request) -> HTMLResponse:
    session = session_of(request)
    row, body = _stored(request, session, quote_id)
    return render(request, "print.html", 200, session, **_quote_context(request, body, json.loads(row.snapshot_json)))


def _replay_check(request: Request, session: Session, quote_id: str) -> dict[str, Any]:
    """The replay route's own check (recompute from the stored snapshot and compare), for roles it allows."""
    from api.http.routers.quotes import Replayers, replay_quote

    if session.principal.role not in (Role.loan_officer, *RISK_ROLES):
        return {"allowed": False}
    del Replayers  # the same roles as the route's dependency
    try:
        result = replay_quote(quote_id, request, "stored", session.principal)
    except ProblemError as error:
        return {"allowed": True, "gone": True, "detail": error.detail}
    return {"allowed": True, "identical": result["identical"], "differences": result["differences"][:20]}


# ------------------------------------------------------------------ history

def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


@router.get("/history")
def history(request: Request, code: Annotated[str, Query(max_length=18)] = "",
            date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
            date_to: Annotated[str, Query(alias="to", max_length=10)] = "") -> HTMLResponse:
    session = session_of(request, *QUOTE_ROLES)
    principal = session.principal
    filters = {"code": code, "from": date_from, "to": date_to}
    try:
        start, end = _date(date_from), _date(date_to)
    except ValueError:
        return render(request, "history.html", 422, session, rows=[], filters=filters, error="bad_date")
    query = sa.select(quotes.c.quote_id, quotes.c.credit_code, quotes.c.as_of, quotes.c.created_at,
                      quotes.c.expires_at, quotes.c.response_json)
    if principal.role in (Role.loan_officer, Role.platform):  # officers see their own quotes; risk staff all
        query = query.where(quotes.c.api_key_id == principal.key_id)
    if code.strip():
        query = query.where(quotes.c.credit_code.startswith(code.strip().upper(), autoescape=True))
    if start:
        query = query.where(quotes.c.created_at >= dt.datetime.combine(start, dt.time(), dt.UTC))
    if end:
        query = query.where(quotes.c.created_at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC))
    with _engine(request).connect() as conn:
        found = conn.execute(query.order_by(quotes.c.created_at.desc()).limit(HISTORY_ROWS)).all()
    lang = _lang(request)
    rows = []
    for r in found:
        body = json.loads(r.response_json)
        best = body.get("best_offer")
        rows.append({"quote_id": r.quote_id, "credit_code": r.credit_code, "as_of": r.as_of.isoformat(),
                     "created": when(r.created_at), "expires": when(r.expires_at),
                     "eligible": sum(bool(q.get("eligible")) for q in body["quotes"]),
                     "best": pick(best["product_name"], lang) if best else None})
    return render(request, "history.html", 200, session, rows=rows, filters=filters, error=None)


# ------------------------------------------------------------------ risk pages

@router.get("/risk/")
def risk_home(request: Request) -> Response:
    session_of(request, *RISK_ROLES)
    return RedirectResponse("/ui/risk/products", status_code=303)


@router.get("/risk/models")
def risk_models(request: Request) -> HTMLResponse:
    from training.registry import Registry

    session = session_of(request, *RISK_ROLES)
    registry = Registry(_engine(request), request.app.state.models_dir)
    models = [m.summary() for m in registry.list()]
    return render(request, "risk_models.html", 200, session, models=models, section="models")


@router.get("/risk/models/{model_id}/report")
def risk_model_report(model_id: str, request: Request) -> Response:
    from training.artifacts import REPORT_FILE
    from training.registry import Registry, RegistryError

    session = session_of(request, *RISK_ROLES)
    registry = Registry(_engine(request), request.app.state.models_dir)
    try:
        record = registry.get(registry.resolve_id(model_id))
    except (RegistryError, KeyError, LookupError):
        lang = _lang(request)
        return render(request, "error.html", 404, session, heading=texts(lang)["not_found"], detail=model_id)
    path = registry.artifact_dir(record) / REPORT_FILE
    if not path.is_file():
        lang = _lang(request)
        return render(request, "error.html", 410, session, heading=texts(lang)["not_found"], detail=str(path.name))
    # The report is a generated file: served as a document of its own, scripts never run (sandbox).
    return FileResponse(path, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": "sandbox"})


@router.get("/risk/batch")
def risk_batch(request: Request) -> HTMLResponse:
    session = session_of(request, *RISK_ROLES)
    with _engine(request).connect() as conn:
        jobs = conn.execute(sa.select(batch_jobs).order_by(batch_jobs.c.created_at.desc()).limit(50)).all()
    rows = [{"job_id": j.job_id, "status": j.status, "requested_by": j.requested_by, "created": when(j.created_at),
             "finished": when(j.finished_at), "done": j.partitions_done, "total": j.partitions_total,
             "rows": j.result_rows, "error": j.error, "request": json.loads(j.request_json)} for j in jobs]
    return render(request, "risk_batch.html", 200, session, jobs=rows, section="batch")


@router.get("/risk/batch/{job_id}/result")
def risk_batch_download(job_id: str, request: Request) -> Response:
    from api.http.routers.batch import download_precredit

    session = session_of(request, *RISK_ROLES)
    return download_precredit(job_id, request, session.principal)  # the API's download: checks and audit


@router.get("/risk/audit")
def risk_audit(request: Request) -> HTMLResponse:
    from features.store import audit

    session = session_of(request, *AUDIT_ROLES)
    with _engine(request).connect() as conn:
        result = audit.verify(conn)
    return render(request, "risk_audit.html", 200, session, audit=result, section="audit")


# ------------------------------------------------------------------ mounting

def _html_errors(app: FastAPI) -> None:
    """Under /ui every error is a page in the reader's language (the API keeps its problem documents)."""
    for error_class, handler in list(app.exception_handlers.items()):
        async def wrapped(request: Request, error: Exception, handler: Any = handler) -> Response:
            response = await handler(request, error)
            if not request.url.path.startswith("/ui"):
                return response
            try:
                detail = json.loads(bytes(response.body)).get("detail", "")
            except (ValueError, AttributeError):
                detail = ""
            lang = _lang(request)
            heading = {403: texts(lang)["forbidden"], 404: texts(lang)["not_found"],
                       503: texts(lang)["unavailable"]}.get(response.status_code, texts(lang)["error"])
            page = render(request, "error.html", response.status_code, None, heading=heading, detail=detail)
            if "retry-after" in response.headers:
                page.headers["retry-after"] = response.headers["retry-after"]
            return page

        app.add_exception_handler(error_class, wrapped)

    async def page_exit(request: Request, error: Exception) -> Response:
        assert isinstance(error, PageExit)
        return error.response

    app.add_exception_handler(PageExit, page_exit)


def mount(app: FastAPI) -> None:
    """Add the console to the app: its pages, its static files, HTML error pages under /ui, `/` -> `/ui`."""
    from api.http.ui import risk  # its pages use this module's helpers

    app.include_router(router)
    app.include_router(risk.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    _html_errors(app)

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)
