"""The protocol server at its edges: origins, refusals that close, what malformed clients get.

A protocol server and a worker in the test's event loop over the in-memory layer, driven
by raw sockets where the bytes on the wire matter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from channelapp.examples.echo import app as echo
from channelapp.layer import BaseChannelLayer, InMemoryChannelLayer, RedisChannelLayer
from channelapp.server.protocol import serve_protocol
from channelapp.worker.runner import Worker

from devtools.procs import free_port


@asynccontextmanager
async def served(layer: BaseChannelLayer | None = None, **settings: Any) -> AsyncIterator[int]:
    """The echo app on a free port with these settings (and no others than the defaults);
    with a worker over the in-memory layer, or no worker over the ``layer`` given."""
    config = dataclasses.replace(echo.settings, **settings)
    worker = Worker(echo, layer := layer or InMemoryChannelLayer(), config)
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    worker_task = (
        asyncio.create_task(worker.run()) if isinstance(layer, InMemoryChannelLayer) else None
    )
    server_task = asyncio.create_task(
        serve_protocol(config, layer, "127.0.0.1", port, ready=ready, stop=stop)
    )
    try:
        async with asyncio.timeout(15):
            await ready.wait()
            while worker_task is not None and not worker.ready:
                await asyncio.sleep(0.01)
        yield port
    finally:
        stop.set()
        worker.stop()
        await asyncio.gather(server_task, *[t for t in (worker_task,) if t], return_exceptions=True)
        await layer.close()


async def exchange(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send ``raw``, read until the server closes (or ``timeout``: then TimeoutError)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()


def handshake(port: int, *, host: str | None = None, origin: str | None = None) -> bytes:
    lines = [
        "GET /ws/echo/ HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def status_of_handshake(port: int, **headers: str | None) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(handshake(port, **headers))
        async with asyncio.timeout(10):
            line = await reader.readline()
        return int(line.split()[1])
    finally:
        writer.close()


# --- origins (DNS rebinding, schemes, ALLOWED_HOSTS) -----------------------------------------


async def test_a_rebound_name_is_refused_whatever_its_host_header_says() -> None:
    async with served() as port:
        evil = {"host": "evil.example", "origin": "http://evil.example"}
        assert await status_of_handshake(port, **evil) == 403
        evil_port = {"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"}
        assert await status_of_handshake(port, **evil_port) == 403


async def test_the_development_servers_own_page_may_open_sockets() -> None:
    async with served() as port:
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            assert await status_of_handshake(port, origin=origin) == 101
        assert await status_of_handshake(port, origin=f"ws://127.0.0.1:{port}") == 403


async def test_allowed_hosts_name_the_pages_that_may_open_sockets() -> None:
    async with served(allowed_hosts=["mysite.example"]) as port:
        site = {"host": "mysite.example"}
        assert await status_of_handshake(port, origin="https://mysite.example", **site) == 101
        assert await status_of_handshake(port, origin="http://mysite.example", **site) == 101
        assert await status_of_handshake(port, origin="https://evil.example", **site) == 403
        assert await status_of_handshake(port, origin="ftp://mysite.example", **site) == 403


async def test_a_full_allowed_origin_compares_the_scheme() -> None:
    async with served(allowed_origins=["https://mysite.example"]) as port:
        assert await status_of_handshake(port, origin="https://mysite.example") == 101
        assert await status_of_handshake(port, origin="http://mysite.example") == 403
        # Listing a production origin keeps the development server's own page working.
        assert await status_of_handshake(port, origin=f"http://127.0.0.1:{port}") == 101


# --- 413 closes at once -----------------------------------------------------------------------


@pytest.mark.parametrize("expect", [False, True])
async def test_a_413_closes_the_connection_within_a_second(expect: bool) -> None:
    async with served(max_body_size=1000, read_timeout=10.0) as port:
        head = (
            "POST /body/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Length: 100000\r\n" + ("Expect: 100-continue\r\n" if expect else "") + "\r\n"
        )
        body = b"" if expect else b"x" * 5000  # over the limit, short of its length
        t0 = time.monotonic()
        answer = await exchange(port, head.encode() + body, timeout=5.0)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
        assert time.monotonic() - t0 < 1.5


async def test_a_413_is_read_by_a_client_still_uploading() -> None:
    async with (
        served(max_body_size=1000) as port,
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/body/", data=b"x" * 50_000) as response,
    ):
        assert response.status == 413


# --- malformed requests: one line, and an HTTP/1.1 answer -------------------------------------


MALFORMED = [
    b"POST /body/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
    b"POST /body/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
    b"POST /body/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /body/ HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nabcde",
]


@pytest.mark.parametrize("raw", MALFORMED)
async def test_a_malformed_request_is_400_and_one_log_line(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with served() as port:
        caplog.clear()
        caplog.set_level(logging.INFO)
        answer = await exchange(port, raw)
        assert answer.split(b"\r\n", 1)[0].split(b" ", 1)[1].startswith(b"400 "), answer[:100]
        await asyncio.sleep(0)  # the log record of the connection's end, if any
    said = [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], said
    about = [r for r in caplog.records if "bad request" in r.getMessage()]
    assert len(about) == 1 and "\n" not in about[0].getMessage(), said


@pytest.mark.parametrize(
    "request_line",
    [b"GET / HTTP/0.9", b"GET / HTTP/2.0", b"GET /readyz HTTP/2.0"],
)
async def test_other_http_versions_get_505_in_an_http_1_1_status_line(request_line: bytes) -> None:
    async with served() as port:
        answer = await exchange(port, request_line + b"\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 505 "), answer[:100]


async def test_http_1_0_is_still_served() -> None:
    async with served() as port:
        answer = await exchange(port, b"GET /work/3/ HTTP/1.0\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 200 "), answer[:100]


# --- WebSocket version and close codes ----------------------------------------------------------


@pytest.mark.parametrize("version", ["8", "7", "12", "14", "13, 8"])
async def test_other_websocket_versions_get_426_naming_13(version: str) -> None:
    async with served() as port:
        raw = handshake(port).replace(b"Version: 13", f"Version: {version}".encode())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            async with asyncio.timeout(10):
                head = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        finally:
            writer.close()
        assert head[0].startswith(b"HTTP/1.1 426 "), head
        assert b"Sec-WebSocket-Version: 13" in head


def client_close_frame(code: int | None) -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big")
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x88, 0x80 | len(payload)]) + mask + masked


async def server_close_code(port: int, code: int | None) -> int:
    """Open a socket, send a close frame with ``code``; the code of the server's close frame."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(handshake(port))
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            writer.write(client_close_frame(code))
            first, length = await reader.readexactly(2)
            assert first == 0x88 and length >= 2, (first, length)
            return int.from_bytes(await reader.readexactly(2), "big")
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (1000, 1000),
        (1001, 1000),
        (4000, 1000),
        (3000, 1000),
        (4999, 1000),
        (None, 1000),  # no code at all
        (1004, 1002),
        (1005, 1002),
        (1006, 1002),
        (1015, 1002),
        (1016, 1002),
        (2999, 1002),
        (999, 1002),
        (5000, 1002),
        (65535, 1002),
    ],
)
async def test_close_codes_no_endpoint_may_send_are_answered_1002(
    sent: int | None, answer: int
) -> None:
    async with served() as port:
        assert await server_close_code(port, sent) == answer


# --- probes -------------------------------------------------------------------------------------


async def test_readyz_does_not_name_the_redis_server() -> None:
    dead = free_port()  # nothing listens there
    layer = RedisChannelLayer([f"redis://127.0.0.1:{dead}/0"])
    async with served(layer=layer) as port, aiohttp.ClientSession() as http:
        async with asyncio.timeout(15):
            while True:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    text = await response.text()
                if text != "not ready: starting\n":  # past the first check
                    break
                await asyncio.sleep(0.05)
        assert response.status == 503
        assert text == "not ready: redis unavailable\n"
        assert str(dead) not in text and "127.0.0.1" not in text
