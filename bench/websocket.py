"""WebSocket echo round trips: channelapp's split architecture against daphne + Channels.

Same client, same run, same machine: C connections each send a frame and wait for
its echo, over and over, for D seconds.

- channelapp: protocol server process -> Redis -> worker process -> Redis -> back, on
  asyncio's event loop and on uvloop (``CHANNELAPP_LOOP``);
- daphne, in-process echo consumer (no channel layer);
- daphne, echo through channels_redis (the consumer's frame takes a trip through Redis).

    python -m bench.websocket [--connections 100,1000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from channelapp.autoscale.local import wait_for_port

from bench.common import machine, ms, pct, table
from bench.results import save
from devtools.processes import AppProcess
from devtools.procs import free_port
from devtools.redis import RedisServer


async def drive(url: str, connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = 0.0

    async def client(http: aiohttp.ClientSession, i: int) -> None:
        async with http.ws_connect(url) as ws:
            payload = f"frame from connection {i}"
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await ws.send_str(payload)
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    errors.append(f"connection {i}: {msg.type.name} {msg.data}")
                    return
                latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        stop_at = time.perf_counter() + 1.0  # warm-up
        await asyncio.gather(*(client(http, i) for i in range(connections)))
        latencies.clear()
        if errors:  # reported apart: a socket lost while the server warms up
            print(f"  warm-up: {len(errors)} connection(s) ended early: {errors[0]}", flush=True)
            errors.clear()
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(http, i) for i in range(connections)))
        elapsed = time.perf_counter() - started
    if errors:
        print(f"  {len(errors)} connection(s) ended early, first: {errors[0]}", flush=True)
    return {
        "rate": len(latencies) / elapsed,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "errors": len(errors),
    }


def daphne(app: str, redis_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    exe = shutil.which("daphne") or str(Path(sys.executable).parent / "daphne")
    proc = subprocess.Popen(
        [exe, "-b", "127.0.0.1", "-p", str(port), f"bench.daphne_apps:{app}"],
        env={**os.environ, "BENCH_REDIS_URL": redis_url, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_for_port(port, 30)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="100,1000", help="socket counts, one run each")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    # (system, connections) -> figures
    results: dict[tuple[str, int], dict[str, float]] = {}
    server = RedisServer().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    ours = "channelapp: protocol -> Redis -> worker"
    base = "daphne + Channels, in-process echo"
    try:
        for label, loop in ((ours, "asyncio"), (f"{ours}, on uvloop", "uvloop")):
            env = {"CHANNELAPP_REDIS_URLS": server.url, "CHANNELAPP_LOOP": loop}
            proto = AppProcess("protocol", "channelapp.examples.echo:app", env, logs).start()
            worker = AppProcess("worker", "channelapp.examples.echo:app", env, logs).start()
            try:
                for count in counts:
                    results[(label, count)] = asyncio.run(
                        drive(f"ws://127.0.0.1:{proto.port}/ws/echo/", count, args.seconds)
                    )
                    print(f"{label}, {count} connections done", flush=True)
            finally:
                worker.stop()
                proto.stop()
        for label, app in (
            (base, "inprocess"),
            ("daphne + Channels, echo via channels_redis", "via_redis"),
        ):
            proc, port = daphne(app, server.url)
            try:
                for count in counts:
                    results[(label, count)] = asyncio.run(
                        drive(f"ws://127.0.0.1:{port}/ws/echo/", count, args.seconds)
                    )
                    print(f"{label}, {count} connections done", flush=True)
            finally:
                stop(proc)
    finally:
        server.cleanup()
        shutil.rmtree(logs, ignore_errors=True)
    rows = [
        [
            f"{count:,}",
            label,
            f"{r['rate']:,.0f}",
            ms(r["p50"]),
            ms(r["p99"]),
            f"{r['rate'] / results[(base, count)]['rate']:.2f}x",
            str(int(r["errors"])),
        ]
        for (label, count), r in sorted(results.items(), key=lambda kv: kv[0][1])
    ]
    print(f"\n# WebSocket echo, {args.seconds:g} s per run ({machine()})")
    headers = ["connections", "server", "round trips/s", "p50 ms", "p99 ms"]
    print(table([*headers, "vs daphne in-process", "sockets lost"], rows))
    save(
        "websocket",
        {
            "seconds": args.seconds,
            "runs": [
                {"system": label, "connections": count, **r}
                for (label, count), r in results.items()
            ],
        },
    )


if __name__ == "__main__":
    main()
