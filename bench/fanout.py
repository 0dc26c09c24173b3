"""Room fan-out: deliveries/s to rooms of 100, 1,000 and 5,000 sockets on one server.

Same client, same run, same machine: N sockets join one room; one of them sends M
messages back to back; every socket should get every message (N x M deliveries).
The rate is deliveries over the time from the first send to the last delivery;
deliveries that never arrive (within 15 s) are counted as lost, and sockets
refused or closed by the server are reported.

- channelapp: the chat example, protocol server process -> Redis -> worker process
  (group_send) -> Redis -> protocol server;
- daphne + Channels 4, a chat consumer with channels_redis group_add / group_send.

    python -m bench.fanout [--sizes 100,1000,5000] [--messages 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import machine, table
from bench.results import save
from bench.websocket import daphne, stop
from devtools.processes import AppProcess
from devtools.redis import RedisServer

QUIET = 15.0  # seconds a socket may wait for its next message before it counts the rest lost


async def open_room(
    http: aiohttp.ClientSession, url: str, size: int
) -> tuple[list[aiohttp.ClientWebSocketResponse], list[str]]:
    """The sockets that opened, and why the others did not."""
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    refused: list[str] = []
    for start in range(0, size, 200):
        opened = await asyncio.gather(
            *(http.ws_connect(url, heartbeat=None) for _ in range(min(200, size - start))),
            return_exceptions=True,
        )
        for ws in opened:
            if isinstance(ws, BaseException):
                refused.append(repr(ws)[:120])
            else:
                sockets.append(ws)
    return sockets, refused


async def take(
    ws: aiohttp.ClientWebSocketResponse, want: int, last: list[float], ends: list[str]
) -> int:
    got = 0
    while got < want:
        try:
            msg = await asyncio.wait_for(ws.receive(), QUIET)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            ends.append(f"{msg.type.name} {msg.data}")
            break
        got += 1
        last[0] = max(last[0], time.perf_counter())
    return got


async def fan_out(url: str, size: int, messages: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets, refused = await open_room(http, url, size)
        await asyncio.sleep(1.0)  # the last joins reach the group
        last, ends = [0.0], []
        warm = [asyncio.create_task(take(ws, 1, last, ends)) for ws in sockets]
        sender = None
        for ws in sockets:  # the first socket the server has not closed sends
            try:
                await ws.send_str(json.dumps({"user": "bench", "message": "warm-up"}))
            except ConnectionError:
                continue
            sender = ws
            break
        assert sender is not None, "the server closed every socket of the room"
        await asyncio.gather(*warm)
        open_now = [ws for ws in sockets if not ws.closed]
        readers = [asyncio.create_task(take(ws, messages, last, ends)) for ws in open_now]
        t0 = time.perf_counter()
        sent = 0
        with contextlib.suppress(ConnectionError):
            for i in range(messages):
                await sender.send_str(json.dumps({"user": "bench", "message": f"m{i}"}))
                sent += 1
        delivered = sum(await asyncio.gather(*readers))
        elapsed = max(last[0] - t0, 1e-9)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    problems = []
    if sent < messages:
        problems.append(f"sender closed after {sent} of {messages} sends")
    if refused:
        problems.append(f"{len(refused)} refused ({refused[0]})")
    if ends:
        problems.append(f"{len(ends)} closed ({ends[0]})")
    return {
        "rate": delivered / elapsed,
        "delivered": delivered,
        "expected": size * messages,
        "seconds": elapsed,
        "problems": "; ".join(problems) or "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    server = RedisServer().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    try:
        env = {"CHANNELAPP_REDIS_URLS": server.url}
        app = "channelapp.examples.chat:app"
        proto = AppProcess("protocol", app, env, logs).start()
        worker = AppProcess("worker", app, env, logs).start()
        try:
            for size in sizes:
                url = f"ws://127.0.0.1:{proto.port}/ws/chat/room{size}/"
                results[("channelapp", size)] = asyncio.run(fan_out(url, size, args.messages))
                print(f"channelapp, room of {size} done", flush=True)
        finally:
            worker.stop()
            proto.stop()
        proc, port = daphne("fanout", server.url)
        try:
            for size in sizes:
                url = f"ws://127.0.0.1:{port}/ws/chat/room{size}/"
                results[("daphne", size)] = asyncio.run(fan_out(url, size, args.messages))
                print(f"daphne + channels_redis, room of {size} done", flush=True)
        finally:
            stop(proc)
    finally:
        server.cleanup()
        shutil.rmtree(logs, ignore_errors=True)
    rows = []
    for size in sizes:
        ours, theirs = results[("channelapp", size)], results[("daphne", size)]
        for label, r in (("channelapp", ours), ("daphne + Channels 4 + channels_redis", theirs)):
            rows.append(
                [
                    f"{size:,}",
                    label,
                    f"{r['rate']:,.0f}",
                    f"{int(r['delivered']):,} / {int(r['expected']):,}",
                    f"{r['seconds']:.2f}",
                    f"{r['rate'] / theirs['rate']:.2f}x" if theirs["rate"] else "-",
                    r["problems"],
                ]
            )
    print(f"\n# Room fan-out, {args.messages} messages back to back ({machine()})")
    headers = [
        "room",
        "server",
        "deliveries/s",
        "delivered",
        "seconds",
        "vs channels_redis",
        "sockets refused / closed",
    ]
    print(table(headers, rows))
    save(
        "fanout",
        {
            "messages": args.messages,
            "runs": [
                {"system": system, "room": size, **r} for (system, size), r in results.items()
            ],
        },
    )


if __name__ == "__main__":
    main()
