"""Request-size limit and per-route metrics as a plain ASGI middleware (Starlette's BaseHTTPMiddleware
adds a task and a stream per request: ~5% of a quote's CPU time in a py-spy profile)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http import errors
from api.http.metrics import LATENCY, REQUESTS

MAX_BODY_BYTES = 64 * 1024


def _content_length(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value
    return None


class LimitsAndMetrics:
    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            response = errors.problem_response(Request(scope), 413, f"request body over {self.max_body_bytes} bytes")
            await response(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless the app starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")  # set by the router on this same scope
            name = getattr(route, "path", "unmatched")
            LATENCY.labels(name).observe(time.perf_counter() - start)
            REQUESTS.labels(name, str(status)).inc()
