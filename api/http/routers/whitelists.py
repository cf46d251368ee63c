"""Pre-credit whitelists: proposed by a risk analyst, published by a different risk approver, pulled by the platform.

Risk side (lifecycle, counts per product and grade):
    POST /v1/whitelists                              propose a succeeded pre-credit job   risk_analyst, admin
    GET  /v1/whitelists, /v1/whitelists/{id}         list, one whitelist with its counts   risk roles
    POST /v1/whitelists/{id}/publish | /reject       decide (never the proposer)           risk_approver, admin
Platform side (only what the platform may see; conditional requests answer 304 when nothing changed):
    GET  /v1/whitelists/products                     the current whitelist of every product
    GET  /v1/whitelists/products/{product}           its published whitelists, newest first
    GET  /v1/whitelists/products/{product}/rows      a page of rows (cursor), current or ?whitelist_id=
    GET  /v1/whitelists/products/{product}/file      the same rows as Parquet or CSV
    GET  /v1/whitelists/products/{product}/changes   the change feed (cursor: each change once)
Loan officers have no access. See docs/whitelists.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from api.http.deps import RISK_ROLES, require
from api.http.errors import ProblemError
from api.keys import Principal, Role
from api.precredit import whitelists as wl
from api.precredit.whitelist_rows import FILE_FORMAT


class _SharedPathRoute(APIRoute):
    """A 405 names every method its path supports (GET and POST /v1/whitelists): Starlette names only the
    methods of the first route whose path matched."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            methods = set(self.methods)
            for route in router.routes:  # this module's routes (the app holds them inside an included router)
                if isinstance(route, APIRoute) and route.path == self.path:
                    methods |= route.methods
            raise StarletteHTTPException(405, headers={"Allow": ", ".join(sorted(methods))})
        await super().handle(scope, receive, send)


router = APIRouter(prefix="/v1/whitelists", tags=["whitelists"], route_class=_SharedPathRoute)
PULL_ROLES = (Role.platform, *RISK_ROLES)
PROPOSE_ROLES = (Role.risk_analyst, Role.admin)
DECIDE_ROLES = (Role.risk_approver, Role.admin)
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8"}
CACHE_CONTROL = "private, no-cache"  # keep a copy, but ask again (If-None-Match) before using it
API_FORMAT = 1  # part of every JSON ETag: bump when a response's layout changes
PROPOSE_WAIT_SECONDS = 5.0  # a proposal loading longer answers 202 (the request deadline is 10 s by default)
log = logging.getLogger(__name__)

WhitelistId = Path(..., ge=1, le=2**31 - 1, description="a whitelist's id")
ProductCode = Path(..., min_length=1, max_length=64, description="a product code, e.g. per_mu")
PageLimit = Query(wl.DEFAULT_PAGE, ge=1, le=wl.MAX_PAGE, description="rows per page")
CursorQuery = Query(None, min_length=1, max_length=512, description="the opaque cursor a previous page returned")


# ------------------------------------------------------------------------------------- documents


class ProposeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"job_id": "0b8f...", "products": ["per_mu"], "note": "June pre-credit, per-mu programme"}]})

    job_id: str = Field(..., min_length=1, max_length=64, description="a pre-credit batch job that has succeeded")
    products: list[str] | None = Field(None, min_length=1, max_length=20,
                                       description="products to whitelist (default: every product of the run)")
    note: str | None = Field(None, max_length=2000)


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=2000)


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(..., min_length=1, max_length=2000, description="why (recorded)")


class WhitelistView(BaseModel):
    whitelist_id: int
    status: Literal["importing", "proposed", "published", "rejected"]
    as_of: dt.date
    job_id: str | None
    source_sha256: str
    proposed_by: str
    proposed_at: dt.datetime
    note: str | None
    rows: int | None
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None
    publication_no: int | None
    products: dict[str, dict[str, Any]] = Field(description="per product: version, fields the platform sees, rows "
                                                            "and limits per grade, the change set against the "
                                                            "whitelist it replaces (counts per kind and grade)")


class Row(BaseModel):
    """A whitelist row as the platform sees it; fields a product does not show the platform are absent."""

    model_config = ConfigDict(extra="forbid")

    credit_code: str
    product: str
    product_version: str
    grade: str | None = None
    tier: str | None = None
    limit_cny: int | None = None
    rate_lo_pct: float | None = None
    rate_hi_pct: float | None = None
    rate_pct: float | None = None
    guarantee_fee_pct: float | None = None
    subsidy_pct: float | None = None
    expires_on: dt.date | None = None
    reasons: str = Field(description="reason codes, ;-separated (empty for an offer)")
    reasons_zh: str
    reasons_en: str


class PublishedView(BaseModel):
    whitelist_id: int
    product: str
    product_version: str
    publication_no: int
    as_of: dt.date
    published_at: dt.datetime
    expires_on: dt.date | None
    rows: int
    fields: list[str]
    current: bool
    changes_cursor: str = Field(description="the change feed's position right after this whitelist")
    rows_url: str
    file_urls: dict[str, str]


class CurrentView(BaseModel):
    products: list[PublishedView]


class HistoryView(BaseModel):
    product: str
    published: list[PublishedView]


class RowsPageView(BaseModel):
    whitelist: PublishedView
    items: list[Row]
    next_cursor: str | None = Field(description="give it back as ?cursor= for the next page; null on the last")


class Change(BaseModel):
    publication_no: int
    whitelist_id: int
    as_of: dt.date
    kind: Literal["entered", "left", "changed"]
    credit_code: str
    changed: list[str] = Field(description="for kind changed: the fields that differ")
    row: Row | None = Field(description="the row now (null when the firm left)")
    previous: Row | None = Field(description="the row before (null when the firm entered)")


class ChangesPageView(BaseModel):
    product: str
    items: list[Change]
    next_cursor: str = Field(description="where the next pull starts: keep it, also when items is empty")
    more: bool


# ------------------------------------------------------------------------------------- helpers


def _engine(request: Request) -> Any:
    return request.app.state.engine


def _problem(error: wl.WhitelistError) -> ProblemError:
    errors = [{"field": error.field, "message": error.message}] if error.field else None
    return ProblemError(error.status, error.message, errors=errors)


def _etag(*parts: Any, weak: bool = True) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f'W/"{digest}"' if weak else f'"{digest}"'


def _not_modified(request: Request, etag: str) -> Response | None:
    """304 when the caller already holds this representation (If-None-Match, weak comparison)."""
    given = request.headers.get("if-none-match")
    if not given:
        return None
    tags = {t.strip().removeprefix("W/") for t in given.split(",")}
    if "*" in tags or etag.removeprefix("W/") in tags:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
    return None


def _json(body: Any, etag: str, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})


def _published_json(pub: wl.Published) -> dict[str, Any]:
    base = f"{router.prefix}/products/{pub.view.product}"
    query = "" if pub.superseded_by is None else f"?whitelist_id={pub.view.whitelist_id}"
    sep = "&" if query else "?"
    return {**pub.to_json(), "rows_url": f"{base}/rows{query}",
            "file_urls": {fmt: f"{base}/file{query}{sep}format={fmt}" for fmt in ("parquet", "csv")}}


NOT_MODIFIED = {304: {"description": "Not Modified: the If-None-Match ETag is still current"}}


# ------------------------------------------------------------------------------------- the platform's pulls
# (declared before /{whitelist_id}, whose integer path would otherwise catch /products)


@router.get("/products", response_model=CurrentView, responses=NOT_MODIFIED,
            summary="The current published whitelist of every product")
def current_whitelists(request: Request, principal: Principal = Depends(require(*PULL_ROLES))) -> Response:
    current = wl.current_all(_engine(request))
    etag = _etag("current", API_FORMAT, *((p.view.product, p.view.whitelist_id) for p in current))
    return _not_modified(request, etag) or _json({"products": [_published_json(p) for p in current]}, etag)


@router.get("/products/{product}", response_model=HistoryView, responses=NOT_MODIFIED,
            summary="A product's published whitelists, newest (the current one) first")
def product_history(request: Request, product: str = ProductCode,
                    principal: Principal = Depends(require(*PULL_ROLES))) -> Response:
    try:
        published = wl.history(_engine(request), product)
    except wl.WhitelistError as error:
        raise _problem(error) from None
    etag = _etag("history", API_FORMAT, product, *(p.view.whitelist_id for p in published))
    return _not_modified(request, etag) or _json(
        {"product": product, "published": [_published_json(p) for p in published]}, etag)


@router.get("/products/{product}/rows", response_model=RowsPageView, responses=NOT_MODIFIED,
            summary="A page of a product's published whitelist (the current one unless whitelist_id), in "
                    "credit-code order")
def whitelist_rows(request: Request, product: str = ProductCode,
                   whitelist_id: int | None = Query(None, ge=1, le=2**31 - 1,
                                                    description="a published whitelist (default: the current one)"),
                   cursor: str | None = CursorQuery, limit: int = PageLimit,
                   principal: Principal = Depends(require(*PULL_ROLES))) -> Response:
    engine = _engine(request)
    try:
        pub, after = wl.resolve_rows(engine, product, whitelist_id, cursor)
        # the page's header says whether its whitelist is still the current one: superseding it is a new page
        etag = _etag("rows", API_FORMAT, pub.view.whitelist_id, product, after, limit, pub.superseded_by)
        cached = _not_modified(request, etag)
        if cached is not None:
            return cached
        page = wl.rows_page(engine, pub, after, limit)
    except wl.WhitelistError as error:
        raise _problem(error) from None
    return _json({"whitelist": _published_json(pub), "items": page.items, "next_cursor": page.next_cursor}, etag)


@router.get("/products/{product}/file", responses={
    200: {"content": {MEDIA_TYPES["parquet"]: {}, "text/csv": {}}}, **NOT_MODIFIED},
    summary="A product's published whitelist as one file (Parquet or CSV)")
def whitelist_file(request: Request, product: str = ProductCode,
                   format: Literal["parquet", "csv"] = Query("parquet", description="parquet (zstd) or csv (UTF-8)"),  # noqa: A002
                   whitelist_id: int | None = Query(None, ge=1, le=2**31 - 1,
                                                    description="a published whitelist (default: the current one)"),
                   principal: Principal = Depends(require(*PULL_ROLES))) -> Response:
    engine = _engine(request)
    try:
        pub = wl.published(engine, product, whitelist_id)
        etag = _etag("file", FILE_FORMAT, pub.view.whitelist_id, product, format, weak=False)
        cached = _not_modified(request, etag)
        if cached is not None:
            return cached
        path, sha, _ = wl.file_for(engine, pub, format)
    except wl.WhitelistError as error:
        raise _problem(error) from None
    wl.audit_download(engine, principal.name, pub, format, sha)
    name = f"whitelist-{product}-{pub.as_of.isoformat()}-{pub.view.whitelist_id}.{format}"
    return FileResponse(path, media_type=MEDIA_TYPES[format], filename=name, headers={
        "ETag": etag, "Cache-Control": CACHE_CONTROL, "X-Content-SHA256": sha,
        "X-Whitelist-Id": str(pub.view.whitelist_id), "X-Changes-Cursor": wl.changes_cursor(product,
                                                                                            pub.publication_no)})


@router.get("/products/{product}/changes", response_model=ChangesPageView, responses=NOT_MODIFIED,
            summary="A product's change feed: firms that entered, left or changed, publication by publication")
def whitelist_changes(request: Request, product: str = ProductCode, cursor: str | None = CursorQuery,
                      limit: int = PageLimit, principal: Principal = Depends(require(*PULL_ROLES))) -> Response:
    engine = _engine(request)
    try:
        position = wl.feed_position(cursor, product)
        etag = _etag("changes", API_FORMAT, product, *position, limit, wl.latest_publication(engine, product))
        cached = _not_modified(request, etag)
        if cached is not None:
            return cached
        page = wl.changes_page(engine, product, cursor, limit)
    except wl.WhitelistError as error:
        raise _problem(error) from None
    return _json({"product": product, "items": page.items, "next_cursor": page.next_cursor, "more": page.more},
                 etag)


# ------------------------------------------------------------------------------------- the risk team's lifecycle


@router.post("", status_code=201, response_model=WhitelistView, responses={
    202: {"description": "accepted, still importing (a large run): follow Location until status is proposed",
          "model": WhitelistView},
    404: {"description": "no such batch job"},
    409: {"description": "the job has not succeeded, its file changed, or it is already proposed"},
    410: {"description": "the job's result file is no longer on the server"}},
             summary="Propose a succeeded pre-credit job as the whitelist of its products for its as-of date")
def propose_whitelist(body: ProposeBody, request: Request, response: Response,
                      principal: Principal = Depends(require(*PROPOSE_ROLES))) -> dict[str, Any]:
    """Checked at once; the rows are loaded beside the request. Done within a few seconds: 201 with the
    proposal. A larger run: 202 with the whitelist "importing" (its `rows` count up), proposed when done."""
    engine = _engine(request)
    try:
        source = wl.job_source(engine, body.job_id)
        proposal = wl.begin_proposal(engine, source, body.products, principal.name, body.note,
                                     definitions=request.app.state.quoting.definitions)
    except wl.WhitelistError as error:
        raise _problem(error) from None
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["record"] = wl.complete_proposal(engine, proposal)
        except Exception as error:  # noqa: BLE001 - reported to the request if it still waits, else logged
            outcome["error"] = error
            if not isinstance(error, wl.WhitelistError):
                log.exception("whitelist %s: import failed", proposal.whitelist_id)

    worker = threading.Thread(target=load, name=f"whitelist-import-{proposal.whitelist_id}", daemon=True)
    worker.start()
    worker.join(PROPOSE_WAIT_SECONDS)
    response.headers["Location"] = f"{router.prefix}/{proposal.whitelist_id}"
    error = outcome.get("error")
    if isinstance(error, wl.WhitelistError):
        raise _problem(error)
    if error is not None:
        raise error
    if "record" in outcome:
        return outcome["record"].to_json()
    response.status_code = 202
    return wl.get(engine, proposal.whitelist_id).to_json()


@router.get("", response_model=list[WhitelistView], summary="Whitelists, newest first")
def list_whitelists(request: Request,
                    status: Literal["importing", "proposed", "published", "rejected"] | None = Query(None),
                    product: str | None = Query(None, min_length=1, max_length=64),
                    limit: int = Query(100, ge=1, le=1000),
                    principal: Principal = Depends(require(*RISK_ROLES))) -> list[dict[str, Any]]:
    return [r.to_json() for r in wl.list_all(_engine(request), status, product, limit)]


@router.get("/{whitelist_id}", response_model=WhitelistView,
            summary="One whitelist: status, who proposed and decided, rows and limits per product and grade, and "
                    "its change set against the whitelist it replaces")
def get_whitelist(request: Request, whitelist_id: int = WhitelistId,
                  principal: Principal = Depends(require(*RISK_ROLES))) -> dict[str, Any]:
    try:
        return wl.get(_engine(request), whitelist_id).to_json()
    except wl.WhitelistError as error:
        raise _problem(error) from None


@router.post("/{whitelist_id}/publish", response_model=WhitelistView, responses={
    403: {"description": "not a risk approver, or the whitelist's own proposer (maker-checker)"},
    409: {"description": "not a proposal, or older than the whitelist now published"}},
             summary="Publish a proposed whitelist (a risk approver who is not its proposer)")
def publish_whitelist(request: Request, whitelist_id: int = WhitelistId, body: PublishBody | None = None,
                      principal: Principal = Depends(require(*DECIDE_ROLES))) -> dict[str, Any]:
    engine = _engine(request)
    try:
        record = wl.publish(engine, whitelist_id, principal.name, body.note if body else None)
    except wl.WhitelistError as error:
        raise _problem(error) from None
    # the files the platform will ask for, written now beside the request (a first download of a large
    # whitelist would otherwise spend its request writing them)
    directory = wl.files_dir()
    threading.Thread(target=_write_files, args=(engine, record, directory), daemon=True,
                     name=f"whitelist-files-{whitelist_id}").start()
    return record.to_json()


def _write_files(engine: Any, record: wl.Whitelist, directory: Any) -> None:
    for product in record.products:
        for fmt in ("parquet", "csv"):
            try:
                wl.file_for(engine, wl.published(engine, product, record.id), fmt, directory)
            except Exception:  # noqa: BLE001 - best effort: a download writes a missing file itself
                log.warning("whitelist %s: writing the %s %s file failed", record.id, product, fmt, exc_info=True)
                return


@router.post("/{whitelist_id}/reject", response_model=WhitelistView, summary="Reject a proposed whitelist",
             responses={409: {"description": "not a proposal"}})
def reject_whitelist(body: RejectBody, request: Request, whitelist_id: int = WhitelistId,
                     principal: Principal = Depends(require(*DECIDE_ROLES))) -> dict[str, Any]:
    try:
        return wl.reject(_engine(request), whitelist_id, principal.name, body.reason).to_json()
    except wl.WhitelistError as error:
        raise _problem(error) from None
