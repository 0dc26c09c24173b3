"""Hostile and broken clients against a real protocol server and worker over real Redis:
each is refused cleanly (status, close code, closed connection), and no log line floods."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer, redis_servers

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"
ECHO = "channelapp.examples.echo:app"
READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def redis_for_module() -> Iterator[RedisServer]:
    with redis_servers(1) as servers:
        yield servers[0]


@pytest.fixture(scope="module")
def echo(redis_for_module: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An echo protocol server and worker; yields the server's host:port."""
    logs: Path = tmp_path_factory.mktemp("hostile")
    env = {
        "CHANNELAPP_REDIS_URLS": redis_for_module.url,
        "CHANNELAPP_READ_TIMEOUT": str(READ_TIMEOUT),
        "CHANNELAPP_MAX_BODY_SIZE": "1000",
    }
    proto = AppProcess("protocol", ECHO, env, logs)
    with running(proto, AppProcess("worker", ECHO, env, logs)):
        yield f"127.0.0.1:{proto.port}"


def connect(where: str) -> socket.socket:
    host, port = where.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Does the server close ``sock`` within ``seconds``? (Data it sends first is read.)"""
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def read_response_head(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def handshake(where: str, path: str = "/ws/echo/", extra: str = "") -> tuple[socket.socket, bytes]:
    sock = connect(where)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {where}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    return sock, read_response_head(sock)


def frame(payload: bytes, *, masked: bool, opcode: int = 0x1) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    else:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed mid-frame")
            out += chunk
        return out

    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(exactly(2), "big")
    elif n == 127:
        n = int.from_bytes(exactly(8), "big")
    return b0 & 0x0F, exactly(n)


def test_slow_request_heads_are_dropped_after_the_read_timeout(echo: str) -> None:
    """Slowloris: 50 connections trickling header bytes are all closed within the bound."""
    socks = [connect(echo) for _ in range(50)]
    for sock in socks:
        sock.sendall(b"GET /work/1/ HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    for _ in range(3):
        time.sleep(0.5)
        for sock in socks:
            try:
                sock.sendall(b"X-a: b\r\n")
            except OSError:
                pass
    bound = READ_TIMEOUT + 10
    assert all(closed_within(s, bound - (time.monotonic() - started)) for s in socks)
    assert time.monotonic() - started < bound
    for sock in socks:
        sock.close()


def test_body_shorter_than_its_length_gets_408_and_a_closed_connection(echo: str) -> None:
    sock = connect(echo)
    sock.sendall(b"POST /body/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    head = read_response_head(sock)
    assert head.startswith(b"HTTP/1.1 408"), head
    assert closed_within(sock, 5)
    sock.close()


def test_413_closes_the_connection_it_says_it_closes(echo: str) -> None:
    sock = connect(echo)
    sock.sendall(b"POST /body/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
    head = read_response_head(sock)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"Connection: close" in head
    assert closed_within(sock, 5)
    sock.close()


def test_unmasked_client_frame_is_closed_with_1002(echo: str) -> None:
    sock, head = handshake(echo)
    assert head.startswith(b"HTTP/1.1 101"), head
    # Masked frames (one with a 16-bit length) pass and are echoed...
    for payload in (b"hi", b"y" * 300):
        sock.sendall(frame(payload, masked=True))
        assert read_frame(sock) == (0x1, payload)
    # ...an unmasked one ends the socket with a protocol error.
    sock.sendall(frame(b"hello", masked=False))
    opcode, body = read_frame(sock)
    assert opcode == 0x8 and int.from_bytes(body[:2], "big") == 1002, (opcode, body)
    sock.close()


def test_a_thousand_subprotocols_are_refused_and_log_nothing_long(
    echo: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    offered = ",".join(f"p{i}" for i in range(1000))
    sock, head = handshake(echo, extra=f"Sec-WebSocket-Protocol: {offered}\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    sock.close()
    # A few offered and none chosen: connected, without a warning naming them all.
    sock, head = handshake(echo, extra="Sec-WebSocket-Protocol: a, b, c\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.close()
    logs = list(tmp_path_factory.getbasetemp().glob("hostile*/protocol-*.log"))
    assert logs
    for log in logs:
        longest = max((len(line) for line in log.read_text().splitlines()), default=0)
        assert longest < 1000, longest


async def test_deeply_nested_json_closes_with_1007(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"CHANNELAPP_REDIS_URLS": redis_server.url}
    proto = AppProcess("protocol", CHAT, env, tmp_path)
    worker = AppProcess("worker", CHAT, env, tmp_path)
    with running(proto, worker):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{proto.url}/ws/chat/lobby/")
            await ws.send_str("[" * 100_000 + "]" * 100_000)
            msg = await asyncio.wait_for(ws.receive(), 15)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1007, msg
    assert "RecursionError" not in worker.log()
