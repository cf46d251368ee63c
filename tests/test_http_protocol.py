"""The HTTP protocol `indexloan serve` runs (api/http/protocol.py): a response's writes go out as one socket write,
the same bytes in the same order; nothing written before a close is lost, nothing is written after an abort."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

from api.http.app import create_app
from api.http.protocol import CoalescingTransport
from tests.live_server import serve


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 1234)}.get(name, default)


def test_writes_of_one_loop_turn_are_one_write_in_order() -> None:
    async def scenario() -> list[list[bytes]]:
        raw = FakeTransport()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\n")
        transport.write(b"")
        transport.writelines([b"bo", b"dy"])
        assert raw.writes == [] and transport.get_write_buffer_size() == 47
        await asyncio.sleep(0)
        first = list(raw.writes)
        transport.write(b"next")
        await asyncio.sleep(0)
        return [first, raw.writes[1:]]

    first, second = asyncio.run(scenario())
    assert first == [b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\nbody"]
    assert second == [b"next"]


def test_close_sends_what_was_written_first_and_abort_drops_it() -> None:
    async def scenario() -> tuple[FakeTransport, FakeTransport]:
        loop = asyncio.get_running_loop()
        closing, aborting = FakeTransport(), FakeTransport()
        one = CoalescingTransport(closing, loop)  # type: ignore[arg-type]
        one.write(b"last words")
        one.close()
        two = CoalescingTransport(aborting, loop)  # type: ignore[arg-type]
        two.write(b"never sent")
        two.abort()
        await asyncio.sleep(0)  # the flushes scheduled by the writes find nothing to send
        assert one.get_extra_info("peername") == ("127.0.0.1", 1234)  # anything else is the transport's
        return closing, aborting

    closing, aborting = asyncio.run(scenario())
    assert closing.writes == [b"last words"] and closing.closed
    assert aborting.writes == [] and aborting.aborted


def test_a_served_response_arrives_in_one_segment_with_its_body(tmp_path: Path) -> None:
    """Over a real socket (the tests' server runs the protocol `indexloan serve` runs): the status line, headers
    and body of a response come in one segment, read by one recv."""
    with serve(create_app(database_url=f"sqlite:///{tmp_path / 'store.db'}")) as url:
        port = int(url.rsplit(":", 1)[1])
        assert httpx.get(f"{url}/healthz").status_code == 200  # started
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            assert len(body) == length, "the headers came without their body"
