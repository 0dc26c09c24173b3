"""A client that does not read: bounded memory, closed with 1008, its disconnect always handled.

A protocol server and a worker run as processes over real redis-servers. The slow
client is a raw TCP socket with a 4 KiB receive buffer that completes the WebSocket
handshake and then reads nothing; a normal client floods their chat room.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer
from tests.support.layer_state import group_members, group_size

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"
TEXT = "x" * 2000  # the chat example's longest message


@pytest.fixture(params=[{}], ids=["defaults"])
def chat(
    redis_shards: list[RedisServer], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[AppProcess, ...]]:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards), **request.param}
    with running(
        AppProcess("protocol", CHAT, env, tmp_path), AppProcess("worker", CHAT, env, tmp_path)
    ) as procs:
        yield procs


def slow_client(port: int, path: str) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that reads only the handshake answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing after the headers is consumed
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[int, int | None]:
    """Read everything left: (bytes read, close code if a close frame was seen last)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except ConnectionResetError:
        pass  # cut off after the close frame: what is in `data` is what arrived
    code = None
    marker = data.rfind(b"\x88")  # FIN + close opcode, unmasked from the server
    if marker >= 0 and len(data) >= marker + 4:
        code = struct.unpack("!H", data[marker + 2 : marker + 4])[0]
    return len(data), code


async def flood(url: str, count: int, midway: Callable[[], None] | None = None) -> int:
    """Send ``count`` chat messages and read the room's broadcasts; returns how many came back.

    ``midway`` runs once half of them have come back.
    """
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        got = 0

        async def read() -> None:
            nonlocal got
            while got < count:
                msg = await asyncio.wait_for(ws.receive(), 30)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                got += 1
                if got == count // 2 and midway is not None:
                    midway()

        reader = asyncio.create_task(read())
        for _ in range(count):
            await ws.send_json({"user": "fast", "message": TEXT})
            await asyncio.sleep(0)
        await reader
        await ws.close()
        return got


async def test_a_client_that_never_reads_is_closed_and_others_are_unaffected(
    chat: tuple[AppProcess, ...], redis_shards: list[RedisServer]
) -> None:
    proto, _worker = chat
    pid = proto.proc.pid  # type: ignore[union-attr]
    slow = slow_client(proto.port, "/ws/chat/slowroom/")
    try:
        await asyncio.sleep(0.5)
        rss_before = rss_kib(pid)
        assert await flood(f"{proto.url}/ws/chat/slowroom/", 5000) == 5000  # about 10 MB
        rss_growth = rss_kib(pid) - rss_before
        t0 = time.monotonic()
        for _ in range(100):  # the slow socket's disconnect removed it from the room
            if group_size(redis_shards, "chat.slowroom") == 0:
                break
            await asyncio.sleep(0.1)
        assert group_size(redis_shards, "chat.slowroom") == 0, group_members(
            redis_shards, "chat.slowroom"
        )
        assert time.monotonic() - t0 < 10
        read, code = await asyncio.to_thread(read_until_closed, slow, 10)
        assert read < 4 << 20, f"{read} bytes still reached the slow client"
        assert code in (1008, None)  # a cut connection may lose the close frame
        assert "client too slow" in proto.log()
        assert rss_growth < 8 * 1024, f"protocol server grew {rss_growth} KiB"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{proto.url}/metrics") as r:
                assert "channelapp_websockets_too_slow_total 1.0" in await r.text()
    finally:
        slow.close()


# A send buffer large enough that the drop, not the bound, ends the socket.
@pytest.mark.parametrize(
    "chat",
    [{"CHANNELAPP_SEND_BUFFER_SIZE": str(64 << 20), "CHANNELAPP_CHANNEL_CAPACITY": "10000"}],
    ids=["large-buffer"],
    indirect=True,
)
async def test_a_slow_client_that_drops_is_disconnected(
    chat: tuple[AppProcess, ...], redis_shards: list[RedisServer]
) -> None:
    proto, _worker = chat
    slow = slow_client(proto.port, "/ws/chat/droproom/")
    await asyncio.sleep(0.5)

    def drop() -> None:  # a reset while a write to it waits for room (3 MB sent by now)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        slow.close()

    assert await flood(f"{proto.url}/ws/chat/droproom/", 3000, midway=drop) == 3000
    for _ in range(100):
        if group_size(redis_shards, "chat.droproom") == 0:
            break
        await asyncio.sleep(0.1)
    assert group_size(redis_shards, "chat.droproom") == 0, group_members(
        redis_shards, "chat.droproom"
    )


@pytest.mark.parametrize(
    "chat",
    [{"CHANNELAPP_SEND_BUFFER_SIZE": str(64 << 20), "CHANNELAPP_CHANNEL_CAPACITY": "10000"}],
    ids=["large-buffer"],
    indirect=True,
)
async def test_sigterm_is_not_held_up_by_a_client_that_never_reads(
    chat: tuple[AppProcess, ...],
) -> None:
    proto, _worker = chat
    slow = slow_client(proto.port, "/ws/chat/stuckroom/")
    try:
        await asyncio.sleep(0.5)
        assert await flood(f"{proto.url}/ws/chat/stuckroom/", 3000) == 3000  # writes to it wait
        t0 = time.monotonic()
        proto.terminate()
        assert await asyncio.to_thread(proto.wait, 30) == 0
        assert time.monotonic() - t0 < 8, "shutdown waited for the slow client"
    finally:
        slow.close()
