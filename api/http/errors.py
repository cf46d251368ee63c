"""Errors as RFC 9457 problem details (application/problem+json) with field-level detail."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.http import logs
from features.settings import get_settings
from features.store.db import store_errors
from training.errors import ArtifactIntegrityError

PROBLEM_MEDIA_TYPE = "application/problem+json"
_FASTAPI_BODY_ERROR = "There was an error parsing the body"  # FastAPI's text for a body it cannot decode


class ProblemError(Exception):
    """Raise to answer with a problem document; `errors` lists field-level problems."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, type_: str = "about:blank",
                 errors: list[dict] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_
        self.errors = errors or []
        self.headers = headers


def retry_after() -> dict[str, str]:
    return {"Retry-After": str(get_settings().retry_after_seconds)}


def store_unavailable(error: BaseException) -> ProblemError:
    """The 503 for a database failure (logged once per outage, not per request)."""
    logs.STORE.failure(error)
    return ProblemError(503, "the store (database) is unavailable; nothing was changed by this request, retry later",
                        title="Store unavailable", headers=retry_after())


def model_unavailable(error: BaseException) -> ProblemError:
    logs.MODEL.failure(error)
    return ProblemError(503, "no verified risk model can be loaded, so no quote can be given; retry later",
                        title="Risk model unavailable", headers=retry_after())


STORE_ERRORS: tuple[type[BaseException], ...] = store_errors(load_drivers=True)


def problem_response(request: Request, status: int, detail: str, *, title: str | None = None,
                     type_: str = "about:blank", errors: list[dict] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` names each invalid field",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the handlers above really send for errors.

    FastAPI documents validation errors as its own JSON shape and leaves out 401/403/413; every error
    here is a problem document, so each error response points at one Problem schema (in place).
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            codes = {503}  # a dependency down: every operation (Retry-After)
            if operation.get("tags") != ["health"]:
                codes.add(429)  # rate limits (per key, per address, failed authentications)
            if operation.get("security"):
                codes |= {401, 403}
            if "requestBody" in operation:
                codes |= {400, 413, 422}  # 400: a body that is not even UTF-8
            parameters = operation.get("parameters", [])
            if parameters:
                codes.add(422)
            if any(p.get("in") == "path" for p in parameters):
                codes.add(404)  # a path names a resource, which may not exist
            for code in codes:
                responses.setdefault(str(code), {})
            operation["responses"] = responses = dict(sorted(responses.items()))
            for code, response in responses.items():
                if code[:1] in ("4", "5"):
                    response.setdefault("description", HTTPStatus(int(code)).phrase)
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    return schema


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "__none__"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(original_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(request, error.status, error.detail, title=error.title, type_=error.type,
                                errors=error.errors, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
                  for e in error.errors()]
        return problem_response(request, 422, "the request is not valid; see errors for each field",
                                title="Invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == _FASTAPI_BODY_ERROR:
            message = "the request body could not be read: send JSON encoded as UTF-8"
            return problem_response(request, 400, message, errors=[{"field": "body", "message": message}])
        headers = error.headers
        if error.status_code == 405:  # a path served by several routes (GET and POST): list every method
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return problem_response(request, error.status_code, str(error.detail), headers=headers)

    async def _store(request: Request, error: Exception) -> JSONResponse:
        problem = store_unavailable(error)
        return problem_response(request, 503, problem.detail, title=problem.title, headers=problem.headers)

    for error_class in STORE_ERRORS:
        app.add_exception_handler(error_class, _store)

    @app.exception_handler(ArtifactIntegrityError)
    async def _model(request: Request, error: ArtifactIntegrityError) -> JSONResponse:
        problem = model_unavailable(error)
        return problem_response(request, 503, problem.detail, title=problem.title, headers=problem.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:  # pragma: no cover - last resort
        return problem_response(request, 500, "internal error; the request was not completed")
