"""Memory per idle WebSocket on one protocol server: channelapp against daphne + Channels.

One server process per system; the client opens idle WebSockets to its echo route in steps
(1,000, 2,000, 5,000, 10,000 by default), reading the server's RSS (``/proc/PID/status``)
after each step has settled, then closes them all and reads it again, then opens the largest
count once more: the second opening shows whether what the first one took is reused. The file
limit is raised for the benchmark and the servers it starts.

    python -m bench.idle_sockets [--counts 1000,2000,5000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
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

SETTLE = 2.0  # seconds after a step before RSS is read


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_file_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def open_sockets(
    http: aiohttp.ClientSession, url: str, count: int, into: list[Any], parallel: int = 200
) -> None:
    """Open WebSockets until ``into`` holds ``count``; each echoes a frame once, so it is
    through the handshake and the app's connect before it counts."""
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with gate:
            ws = await http.ws_connect(url, heartbeat=None, autoping=True)
            await ws.send_str(f"hello {i}")
            msg = await ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket {i}: {msg.type.name} {msg.data}")
            into.append(ws)

    await asyncio.gather(*(one(len(into) + i) for i in range(count - len(into))))


async def measure(pid: int, url: str, counts: list[int]) -> dict[str, Any]:
    """RSS (KB) of ``pid``: before, at each count, after closing all, after the largest count
    again."""
    out: dict[str, Any] = {"steps": []}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets: list[Any] = []
        await open_sockets(http, url, 10, sockets)  # the server's first sockets warm it up
        await asyncio.gather(*(ws.close() for ws in sockets))
        sockets.clear()
        await asyncio.sleep(SETTLE)
        out["base"] = base = rss_kb(pid)
        for count in counts:
            started = time.perf_counter()
            await open_sockets(http, url, count, sockets)
            opened = time.perf_counter() - started
            await asyncio.sleep(SETTLE)
            rss = rss_kb(pid)
            out["steps"].append({"sockets": count, "rss": rss, "per_socket": (rss - base) / count})
            print(f"  {count:,} sockets: {(rss - base) / count:.1f} KB each ({opened:.1f} s)")
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        sockets.clear()
        await asyncio.sleep(SETTLE * 2)
        out["after_close"] = rss_kb(pid)
        await open_sockets(http, url, counts[-1], sockets)
        await asyncio.sleep(SETTLE)
        out["reopened"] = rss_kb(pid)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,2000,5000,10000")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    raise_file_limit(2 * counts[-1] + 1000)  # client and server sockets, inherited
    results: dict[str, dict[str, Any]] = {}
    server = RedisServer().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    try:
        env = {"CHANNELAPP_REDIS_URLS": server.url}
        proto = AppProcess("protocol", "channelapp.examples.echo:app", env, logs).start()
        worker = AppProcess("worker", "channelapp.examples.echo:app", env, logs).start()
        try:
            assert proto.proc is not None
            print("channelapp protocol server", flush=True)
            results["channelapp protocol server"] = asyncio.run(
                measure(proto.proc.pid, f"ws://127.0.0.1:{proto.port}/ws/echo/", counts)
            )
        finally:
            worker.stop()
            proto.stop()
        proc, port = daphne("inprocess", server.url)
        try:
            print("daphne + Channels", flush=True)
            results["daphne + Channels"] = asyncio.run(
                measure(proc.pid, f"ws://127.0.0.1:{port}/ws/echo/", counts)
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                stop(proc)
    finally:
        server.cleanup()
        shutil.rmtree(logs, ignore_errors=True)
    rows = []
    for label, r in results.items():
        for step in r["steps"]:
            rows.append(
                [
                    label,
                    f"{step['sockets']:,}",
                    f"{step['rss'] / 1024:.0f}",
                    f"{step['per_socket']:.1f}",
                    "",
                    "",
                ]
            )
        rows[-1][4] = f"{r['after_close'] / 1024:.0f}"
        rows[-1][5] = f"{r['reopened'] / 1024:.0f}"
    print(f"\n# Idle WebSockets on one server process ({machine()})")
    headers = ["server", "sockets", "RSS MB", "KB per socket"]
    print(table([*headers, "RSS MB after closing all", "RSS MB with them again"], rows))
    save("idle_sockets", {"systems": results})


if __name__ == "__main__":
    main()
