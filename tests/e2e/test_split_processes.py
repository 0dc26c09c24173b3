"""Protocol servers and workers as real processes over three real Redis shards, driven by a
real HTTP/WebSocket client (aiohttp)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devtools.polling import wait_for
from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"
ECHO = "channelapp.examples.echo:app"
INFLIGHT = "tests.e2e.inflight_app:app"
REPO = Path(__file__).resolve().parents[2]  # where tests.e2e.inflight_app is imported from


def layer_env(shards: list[RedisServer], **extra: str) -> dict[str, str]:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in shards)}
    env.update({f"CHANNELAPP_{k.upper()}": v for k, v in extra.items()})
    return env


def group_size(shards: list[RedisServer], group: str) -> int:
    """Members of a group of the default key prefix, on whichever shard holds it."""
    return sum(int(s.command("ZCARD", f"channelapp:group:{group}").lstrip(":")) for s in shards)


@pytest.fixture
def chat(redis_shards: list[RedisServer], tmp_path: Path) -> Iterator[tuple[AppProcess, ...]]:
    env = layer_env(redis_shards)
    with running(
        AppProcess("protocol", CHAT, env, tmp_path),
        AppProcess("protocol", CHAT, env, tmp_path),
        AppProcess("worker", CHAT, env, tmp_path),
    ) as procs:
        yield procs


async def test_chat_page_api_and_errors(chat: tuple[AppProcess, ...]) -> None:
    proto = chat[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proto.url}/") as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
            page = await r.text()
            assert 'id="message"' in page and '<script src="/reconnect.js">' in page
        async with http.get(f"{proto.url}/reconnect.js") as r:
            assert r.status == 200 and "javascript" in r.headers["Content-Type"]
            assert "ChannelappReconnect" in await r.text()
        async with http.get(f"{proto.url}/api/rooms/lobby/") as r:
            assert await r.json() == {"room": "lobby", "group": "chat.lobby"}
        async with http.get(f"{proto.url}/api/rooms/bad%20room/") as r:
            assert r.status == 400
        async with http.get(f"{proto.url}/nowhere/") as r:
            assert r.status == 404
        async with http.post(f"{proto.url}/", data=b"x" * (2 * 1024 * 1024)) as r:
            assert r.status == 413
        async with http.get(f"{proto.url}/metrics") as r:
            assert "channelapp_http_requests_total" in await r.text()


async def test_chat_page_labels_its_fields_wraps_long_words_and_has_an_icon(
    chat: tuple[AppProcess, ...],
) -> None:
    proto = chat[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proto.url}/") as r:
            page = await r.text()
        for field in ("user", "room", "message"):
            assert f'<label for="{field}">' in page and f'id="{field}"' in page, field
        assert "overflow-wrap: anywhere" in page
        assert "event.reason" in page and "1006" in page  # close reasons are shown
        for icon in ("/favicon.ico", "/favicon.svg"):
            async with http.get(f"{proto.url}{icon}") as r:
                assert r.status == 200 and r.headers["Content-Type"] == "image/svg+xml"
                assert (await r.text()).startswith("<svg")


async def test_rooms_broadcast_across_protocol_servers(
    chat: tuple[AppProcess, ...], redis_shards: list[RedisServer]
) -> None:
    """Two sockets on two protocol servers: a room's message reaches both through the group."""
    a, b = chat[0], chat[1]
    async with aiohttp.ClientSession() as http:
        ws_a = await http.ws_connect(f"{a.url}/ws/chat/room1/")
        ws_b = await http.ws_connect(f"{b.url}/ws/chat/room1/")
        ws_other = await http.ws_connect(f"{b.url}/ws/chat/room2/")
        await asyncio.to_thread(
            wait_for,
            lambda: (
                group_size(redis_shards, "chat.room1") == 2
                and group_size(redis_shards, "chat.room2") == 1
            ),
            10,
            0.02,
            "both sockets of room1 and the one of room2 in their groups",
        )
        await ws_a.send_json({"user": "ann", "message": "hello"})
        for ws in (ws_a, ws_b):
            got = await asyncio.wait_for(ws.receive_json(), 10)
            assert got == {"room": "room1", "user": "ann", "message": "hello"}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws_other.receive(), 0.5)
        # Malformed JSON closes with 1007; the server and the others carry on.
        await ws_b.send_str("{not json")
        msg = await asyncio.wait_for(ws_b.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1007
        await ws_a.send_json({"user": "ann", "message": "still here"})
        assert (await asyncio.wait_for(ws_a.receive_json(), 10))["message"] == "still here"
        for ws in (ws_a, ws_other):
            await ws.close()


async def test_websocket_origin_and_frame_limits(chat: tuple[AppProcess, ...]) -> None:
    proto = chat[0]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(
                f"{proto.url}/ws/chat/r/", headers={"Origin": "http://evil.example"}
            )
        assert err.value.status == 403
        ws = await http.ws_connect(
            f"{proto.url}/ws/chat/r/", headers={"Origin": proto.url}, max_msg_size=0
        )
        await ws.send_str("x" * (2 * 1024 * 1024))
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
        # Rejected by the consumer (bad room name) -> 403 at the handshake.
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(f"{proto.url}/ws/chat/no%20spaces/")
        assert err.value.status == 403


def traced(path: Path) -> dict[str, set[tuple[int, int]]]:
    """The ``start``/``finish`` records of the inflight app: (n, pid) pairs per event."""
    events: dict[str, set[tuple[int, int]]] = {"start": set(), "finish": set()}
    if path.exists():
        for line in path.read_text().splitlines():
            event, n, pid = line.split()
            events[event].add((int(n), int(pid)))
    return events


def in_flight(path: Path, pid: int) -> set[int]:
    """Requests that process ``pid`` started and has not finished."""
    events = traced(path)
    return {n for n, p in events["start"] - events["finish"] if p == pid}


async def test_worker_sigterm_mid_stream_loses_nothing(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    """Requests of 1.5 s work each over two workers; one is SIGTERMed while it has several in
    flight: it finishes every one of them before it exits, and every request is answered."""
    trace = tmp_path / "trace"
    env = {
        **layer_env(redis_shards, response_timeout="20"),
        "INFLIGHT_LOG": str(trace),
        "PYTHONPATH": str(REPO),
    }
    worker_env = {**env, "CHANNELAPP_WORKER_CONCURRENCY": "8"}
    proto = AppProcess("protocol", INFLIGHT, env, tmp_path)
    w1 = AppProcess("worker", INFLIGHT, worker_env, tmp_path)
    w2 = AppProcess("worker", INFLIGHT, worker_env, tmp_path)
    total = 48
    with running(proto, w1, w2):
        assert w1.proc is not None
        pid = w1.proc.pid
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http:

            async def one(n: int) -> tuple[int, dict[str, int] | None]:
                async with http.get(f"{proto.url}/slow/{n}/?ms=1500") as r:
                    return r.status, (await r.json() if r.status == 200 else None)

            tasks = [asyncio.create_task(one(n)) for n in range(total)]
            await asyncio.to_thread(
                wait_for,
                lambda: len(in_flight(trace, pid)) >= 4,
                15,
                0.02,
                "the first worker running at least 4 requests",
            )
            at_sigterm = in_flight(trace, pid)
            w1.terminate()
            results = await asyncio.gather(*tasks)
        assert await asyncio.to_thread(w1.wait, 30) == 0
    events = traced(trace)
    finished_by_w1 = {n for n, p in events["finish"] if p == pid}
    assert at_sigterm <= finished_by_w1, f"dropped in flight: {at_sigterm - finished_by_w1}"
    waited = re.search(r"stopping: waiting for (\d+) message\(s\) in flight", w1.log())
    assert waited and int(waited.group(1)) >= 1, w1.log()
    assert "did not finish in time" not in w1.log()
    assert [s for s, _ in results].count(200) == total, [s for s, _ in results if s != 200]
    assert sorted(b["n"] for _, b in results if b) == list(range(total))
    assert {n for n, _ in events["finish"]} == set(range(total))


async def test_no_worker_means_504_and_a_full_channel_means_503(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = layer_env(redis_shards, response_timeout="1", channel_capacity="3")
    with running(AppProcess("protocol", ECHO, env, tmp_path)) as (proto,):
        async with aiohttp.ClientSession() as http:

            async def one(n: int) -> tuple[int, str | None]:
                async with http.get(f"{proto.url}/work/{n}/") as r:
                    return r.status, r.headers.get("Retry-After")

            results = await asyncio.gather(*(one(n) for n in range(8)))
        statuses = sorted(s for s, _ in results)
        assert statuses.count(504) == 3, statuses  # queued, never answered in time
        assert statuses.count(503) == 5, statuses  # refused: http.request full
        assert all(retry == "1" for s, retry in results if s == 503)


async def test_protocol_sigterm_closes_sockets_with_1012(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = layer_env(redis_shards)
    proto = AppProcess("protocol", ECHO, env, tmp_path)
    with running(proto, AppProcess("worker", ECHO, env, tmp_path)):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{proto.url}/ws/echo/")
            await ws.send_str("ping")
            assert (await asyncio.wait_for(ws.receive(), 10)).data == "ping"
            proto.terminate()
            msg = await asyncio.wait_for(ws.receive(), 15)
            # 1012 service restart: the client reconnects (to another server).
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1012
        assert await asyncio.to_thread(proto.wait, 30) == 0


async def test_protocol_sigterm_spreads_the_closes_over_the_drain_window(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    sockets, drain = 24, 4.0
    env = layer_env(redis_shards, drain_seconds=str(drain))
    proto = AppProcess("protocol", ECHO, env, tmp_path)
    with running(proto, AppProcess("worker", ECHO, env, tmp_path)):
        async with aiohttp.ClientSession() as http:
            conns = [await http.ws_connect(f"{proto.url}/ws/echo/") for _ in range(sockets)]
            for i, ws in enumerate(conns):  # every socket open end to end
                await ws.send_str(str(i))
                assert (await asyncio.wait_for(ws.receive(), 10)).data == str(i)
            loop = asyncio.get_running_loop()

            async def closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[float, int]:
                msg = await asyncio.wait_for(ws.receive(), drain + 15)
                assert msg.type == aiohttp.WSMsgType.CLOSE, msg
                return loop.time() - start, msg.data

            start = loop.time()
            proto.terminate()
            waiting = [asyncio.ensure_future(closed(ws)) for ws in conns]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            # Draining has begun: not ready any more (no listener, or 503), sockets still open.
            try:
                async with http.get(f"{proto.url}/readyz") as r:
                    assert r.status == 503
            except aiohttp.ClientConnectionError:
                pass
            assert sum(not t.done() for t in waiting) > sockets // 2
            results = await asyncio.gather(*waiting)
        codes = {code for _, code in results}
        times = sorted(t for t, _ in results)
        assert codes == {1012}, results
        print(
            f"\n{sockets} sockets, drain {drain:g}s: closes from {times[0]:.2f}s to {times[-1]:.2f}s"
        )
        assert times[0] < drain * 0.25, times  # the first goes at once
        assert drain * 0.75 < times[-1] < drain + 2, times  # the last near the window's end
        # Evenly spread: about half of them by mid-window, not a burst at either end.
        by_half = sum(t < drain / 2 for t in times)
        assert sockets * 0.3 <= by_half <= sockets * 0.7, times
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < drain / 3, times
        assert await asyncio.to_thread(proto.wait, 30) == 0


async def test_echo_survives_a_shard_restart(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = layer_env(redis_shards)
    proto = AppProcess("protocol", ECHO, env, tmp_path)
    with running(proto, AppProcess("worker", ECHO, env, tmp_path)):
        async with aiohttp.ClientSession() as http:

            async def ok() -> bool:
                try:
                    async with http.get(
                        f"{proto.url}/work/1/", timeout=aiohttp.ClientTimeout(5)
                    ) as r:
                        return r.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    return False

            assert await ok()
            for shard in redis_shards:
                shard.stop()
            async with http.get(f"{proto.url}/work/2/") as r:
                assert r.status in (503, 504)
            for shard in redis_shards:
                shard.start()
            for _ in range(100):
                if await ok():
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("no recovery after the shards came back")
            body = json.dumps({"x": 1}).encode()
            async with http.post(f"{proto.url}/body/", data=body) as r:
                assert (await r.json()) == {"length": len(body)}
