"""uvicorn's HTTP protocol (httptools) with each response's writes coalesced into one socket write.

uvicorn writes a response's status line and headers as soon as the app sends `http.response.start`, and the
body when it sends `http.response.body`: two writes, two TCP segments, and a client that is woken twice per
response (it reads the headers, then waits for the body). Here the writes made during one turn of the event
loop are joined and written once at its end (`loop.call_soon`): the bytes and their order are the same, the
client is woken once. On this 2-core machine the first of the two writes was a third of the quote's
GIL-held samples at one connection (py-spy): the client, woken by the headers, preempted the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SPEC = "api.http.protocol:CoalescingHttpToolsProtocol"  # uvicorn's `http` setting (`indexloan serve`, tests)


class CoalescingTransport:
    """A transport whose writes within one event-loop turn go out as one `write`; anything else is delegated."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self._flush()  # what was written before close goes first, as it would without coalescing
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
