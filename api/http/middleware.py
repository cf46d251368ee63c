"""The service's door, as one plain ASGI middleware (Starlette's BaseHTTPMiddleware adds a task and a stream
per request: ~5% of a quote's CPU time in a py-spy profile). In order:

1. **Rate limits** (not for /healthz, /readyz, /metrics): per client address, then per presented key; 429
   with Retry-After. Buckets are shared by the worker processes (api/http/limits.py).
2. **Body limit on the stream**: a declared Content-Length over the limit is refused at once; any body
   (chunked or not) is counted as it arrives and refused as soon as it passes the limit, with
   `Connection: close`, so nothing more is read or kept (a 400 MB chunked body costs 64 KB).
3. **Strict JSON**: a JSON body must be UTF-8 (no BOM, no UTF-16/32), without duplicate keys, NaN or
   Infinity, integers of at most 4300 digits, and not nested deeper than 64 levels; each a problem document
   naming the field. Bodies are small (the limit), so the check parses them once more (~5 us).
4. **Deadline**: a request whose response has not started after `request_timeout_seconds` (a hung database,
   say) is answered 503 with Retry-After; whatever the handler sends later is dropped.
5. **Security headers** on every response: a CSP without inline script, frame-ancestors 'none' and
   X-Frame-Options DENY, nosniff, Referrer-Policy no-referrer; `Cache-Control: no-store` under /v1.
6. **Metrics**: latency and count per route and status.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http import errors
from api.http.metrics import LATENCY, REQUESTS
from features.settings import get_settings

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
NO_STORE = (b"cache-control", b"no-store")


class BodyError(Exception):
    def __init__(self, status: int, detail: str, field: str = "body") -> None:
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return True  # FastAPI reads a body without a content type as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BodyError(422, f"the key {key!r} appears more than once in one object", field=key)
        seen[key] = value
    return seen


def _no_constant(name: str) -> None:
    raise BodyError(422, f"{name} is not a number JSON allows")


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def check_json(body: bytes) -> None:
    """Refuse (BodyError) a JSON body that is not strict UTF-8 JSON; syntax errors are left to FastAPI (422)."""
    if body[:3] == b"\xef\xbb\xbf" or body[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(body) > 1 and b"\0" in body[:4]):
        raise BodyError(400, "the request body could not be read: send JSON encoded as UTF-8 (no byte order "
                             "mark, not UTF-16 or UTF-32)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "the request body could not be read: send JSON encoded as UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError:
        return  # FastAPI answers with its own field-level 422
    except RecursionError:
        raise BodyError(422, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise BodyError(422, f"the JSON body holds a value that cannot be read: {str(error)[:120]}") from None
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise BodyError(422, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")


class LimitsAndMetrics:
    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None) -> None:
        settings = get_settings()
        self.app = app
        self.max_body_bytes = max_body_bytes or settings.max_body_bytes
        self.timeout = settings.request_timeout_seconds

    async def _problem(self, scope: Scope, receive: Receive, send: Send, status: int, detail: str, *,
                       field: str | None = None, headers: dict[str, str] | None = None) -> None:
        response = errors.problem_response(Request(scope), status, detail, headers=headers,
                                           errors=[{"field": field, "message": detail}] if field else None)
        await response(scope, receive, send)

    async def _read_body(self, receive: Receive) -> tuple[bytes, list[Message]]:
        """The whole body, counted as it arrives; BodyError(413) as soon as it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), [message]  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyError(413, f"request body over {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless the app starts a response
        path = scope["path"]
        no_store = path.startswith("/v1/")
        close = False
        timed_out = False
        started = False

        async def guarded_send(message: Message) -> None:
            if timed_out:
                return  # the deadline already answered this request
            await decorated_send(message)

        async def decorated_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if no_store and not any(k == b"cache-control" for k, _ in headers):
                    headers.append(NO_STORE)
                if close:
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            limits = getattr(scope["app"].state, "limits", None) if "app" in scope else None
            if limits is not None and path not in UNLIMITED_PATHS:
                wait = await self._rate_limited(scope, limits)
                if wait:
                    retry = str(max(1, round(wait + 0.5)))
                    await self._problem(scope, receive, guarded_send, 429,
                                        "too many requests; slow down and retry after the given time",
                                        headers={"Retry-After": retry})
                    return
            length = _header(scope, b"content-length")
            chunked = (_header(scope, b"transfer-encoding") or b"").lower().endswith(b"chunked")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                close = True
                await self._problem(scope, receive, guarded_send, 413,
                                    f"request body over {self.max_body_bytes} bytes")
                return
            if chunked or (length is not None and int(length) > 0):
                try:
                    body, pending = await self._read_body(receive)
                    if body and _is_json(_header(scope, b"content-type")):
                        check_json(body)
                except BodyError as error:
                    close = error.status == 413  # stop reading: the rest of the body is never read
                    await self._problem(scope, receive, guarded_send, error.status, error.detail,
                                        field=error.field if error.status != 413 else None)
                    return
                receive = _replay(body, pending, receive)

            loop = asyncio.get_running_loop()

            def deadline() -> None:
                nonlocal timed_out, close
                if started:
                    return
                close = True
                problem = errors.problem_response(
                    Request(scope), 503, "the request could not be completed in time (a dependency is slow or "
                    "down); it may or may not have taken effect: retry, with the same Idempotency-Key for a quote",
                    title="Timed out", headers=errors.retry_after())
                timed_out = True  # from now on the handler's messages are dropped; the 503 goes out directly
                task = loop.create_task(problem(scope, receive, decorated_send))
                _background.add(task)
                task.add_done_callback(_background.discard)

            # when this request gives up (request.state.deadline, time.monotonic()): the quote writer drops a
            # quote still queued then, so a request answered 503 here is not stored later unacknowledged
            scope.setdefault("state", {})["deadline"] = time.monotonic() + self.timeout
            timer = loop.call_later(self.timeout, deadline)
            try:
                await self.app(scope, receive, guarded_send)
            finally:
                timer.cancel()
        finally:
            route: Any = scope.get("route")  # set by the router on this same scope
            name = getattr(route, "path", "unmatched")
            LATENCY.labels(name).observe(time.perf_counter() - start)
            REQUESTS.labels(name, str(status)).inc()

    async def _rate_limited(self, scope: Scope, limits: Any) -> float:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = limits.address(address)
        if wait:
            return wait
        authorization = _header(scope, b"authorization")
        if authorization:
            return limits.key(authorization.decode("latin-1"))
        return 0.0


_background: set[asyncio.Task] = set()


def _replay(body: bytes, pending: list[Message], receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then whatever comes next."""
    messages = [{"type": "http.request", "body": body, "more_body": False}] if not pending else list(pending)

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replay
