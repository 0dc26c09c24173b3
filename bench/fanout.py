"""Room fan-out: deliveries/s to rooms of 100, 1,000 and 5,000 sockets on one server.

Same client, same run, same machine: N sockets join one room; one of them sends M
messages back to back; every socket should get every message (N x M deliveries).
The rate is deliveries over the time from the first send to the last delivery;
deliveries that never arrive (within 15 s) are counted as lost, and sockets
refused or closed by the server are reported. The client (bench.raw_websocket) counts
frames from their headers as bytes arrive, so it keeps up with the servers it measures.

- channelapp: the chat example, protocol server process -> Redis -> worker process
  (group_send) -> Redis -> protocol server;
- daphne + Channels 4, a chat consumer with channels_redis group_add / group_send.

    python -m bench.fanout [--sizes 100,1000,5000] [--messages 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import machine, table
from bench.raw_websocket import CountingSocket, open_sockets
from bench.results import save
from bench.websocket import daphne, stop
from devtools.processes import AppProcess
from devtools.redis import RedisServer

QUIET = 15.0  # seconds a socket may wait for its next message before it counts the rest lost


async def until_quiet(sockets: list[CountingSocket], want: list[int]) -> None:
    """Until every socket has ``want`` text frames, or none arrived for QUIET seconds."""
    progress, seen = time.perf_counter(), -1
    while True:
        got = sum(min(s.texts, w) for s, w in zip(sockets, want, strict=True))
        if got == sum(want):
            return
        if got != seen:
            progress, seen = time.perf_counter(), got
        elif time.perf_counter() - progress > QUIET:
            return
        await asyncio.sleep(0.005)


async def fan_out(url: str, size: int, messages: int) -> dict[str, Any]:
    """One room of ``size`` sockets, ``messages`` sent back to back by one of them."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sockets, refused = await open_sockets(host, port, parts.path, size)
    try:
        await asyncio.sleep(1.0)  # the last joins reach the group
        # The first socket the server has not closed sends a warm-up to the room; once it is
        # through, the first open socket that got it sends the measured messages (a server
        # may close sockets while thousands join).
        sender = None
        for _ in range(3):
            first = next((s for s in sockets if s.closed_with is None), None)
            if first is None:
                break
            before = [s.texts for s in sockets]
            first.send_text(json.dumps({"user": "bench", "message": "warm-up"}))
            await until_quiet(sockets, [b + 1 for b in before])
            sender = next(
                (s for s, b in zip(sockets, before, strict=True)
                 if s.closed_with is None and s.texts > b),
                None,
            )  # fmt: skip
            if sender is not None:
                break
        if sender is None:  # reported as what happened, not measured
            ends = [s.closed_with for s in sockets if s.closed_with is not None]
            return {"rate": 0.0, "delivered": 0, "expected": size * messages, "seconds": 0.0,
                    "problems": f"no warm-up went round the room; {len(ends)} closed"}  # fmt: skip
        base = [s.texts for s in sockets]
        t0 = time.perf_counter()
        for i in range(messages):
            sender.send_text(json.dumps({"user": "bench", "message": f"m{i}"}))
        await until_quiet(sockets, [b + messages for b in base])
        delivered = sum(min(s.texts - b, messages) for s, b in zip(sockets, base, strict=True))
        elapsed = max(max(s.last_text_at for s in sockets) - t0, 1e-9)
        ends = [s.closed_with for s in sockets if s.closed_with is not None]
    finally:
        # Closed as a client closes (a close frame, the server's answer), not cut off: a
        # server may count an abrupt close against the next room.
        for s in sockets:
            s.close()
        await asyncio.wait([s.lost for s in sockets] or [asyncio.sleep(0)], timeout=10)
        for s in sockets:
            if s.transport is not None:
                s.transport.close()
    problems = []
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
