"""What a request passes before anything is done for it: its Host, the server not shutting
down, and ``Expect: 100-continue`` (answered by the server itself, or refused early)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from channelapp.server import admission
from channelapp.settings import Settings

LIMIT = 10


@pytest.mark.parametrize(
    ("host", "draining", "status"),
    [
        ("app.example", False, None),
        ("app.example:8000", False, None),
        ("evil.example", False, 400),
        ("evil.example", True, 400),  # the host is checked first
        ("app.example", True, 503),
    ],
)
def test_host_and_draining(host: str, draining: bool, status: int | None) -> None:
    settings = dataclasses.replace(Settings(), allowed_hosts=["app.example"])
    request = make_mocked_request("GET", "/", headers={"Host": host})
    refusal = admission.refusal(request, settings, draining)
    assert (refusal.status if refusal else None) == status
    if status == 503:
        assert refusal is not None and refusal.headers["Connection"] == "close"


@asynccontextmanager
async def echo_length() -> AsyncIterator[int]:
    """A server that answers with the length of the body it read, behind ``admission.expect``."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.content.read())))

    async def expect(request: web.Request) -> web.StreamResponse | None:
        return await admission.expect(request, LIMIT)

    app = web.Application()
    app.router.add_route("POST", "/", handle, expect_handler=expect)
    server = TestServer(app)
    await server.start_server()
    try:
        assert server.port is not None
        yield server.port
    finally:
        await server.close()


async def head_then_body(port: int, head: str, body: bytes = b"") -> tuple[bytes, bytes]:
    """What the server says after the head alone, then after the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        async with asyncio.timeout(5):
            first = await reader.readuntil(b"\r\n\r\n")
            if first.startswith(b"HTTP/1.1 100 "):
                writer.write(body)
                rest = await reader.read(1024)
            else:
                rest = b""
        return first, rest
    finally:
        writer.close()


async def test_100_continue_is_said_before_the_body_is_sent() -> None:
    async with echo_length() as port:
        head = (
            "POST / HTTP/1.1\nHost: x\nContent-Length: 5\nExpect: 100-continue\nConnection: close\n"
        )
        first, rest = await head_then_body(port, head, b"12345")
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\n5"), rest


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent() -> None:
    async with echo_length() as port:
        head = f"POST / HTTP/1.1\nHost: x\nContent-Length: {LIMIT + 1}\nExpect: 100-continue\n"
        first, _ = await head_then_body(port, head)
    assert first.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in first, first


async def test_another_expectation_is_417() -> None:
    async with echo_length() as port:
        head = "POST / HTTP/1.1\nHost: x\nContent-Length: 1\nExpect: teapot\n"
        first, _ = await head_then_body(port, head)
    assert first.startswith(b"HTTP/1.1 417 "), first


async def test_http_1_0_gets_no_100_continue() -> None:
    async with echo_length() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nab")
        async with asyncio.timeout(5):
            answer = await reader.read(-1)
        writer.close()
    assert answer.startswith(b"HTTP/1.0 200 ") and answer.endswith(b"\r\n\r\n2"), answer
