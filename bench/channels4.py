"""The Channels 4 tutorial's chat (examples/channels4/mysite, unchanged) under three servers.

Same client, same run, same machine, one redis-server:

- daphne + channels_redis: the tutorial as its docs deploy it;
- daphne + channelapp's layer: ``BACKEND: channelapp.channels.RedisChannelLayer``;
- channelapp asgi + channelapp's layer: ``channelapp asgi mysite.asgi:application`` with
  ``CHANNELAPP_REDIS_URLS`` set (CHANNEL_LAYERS pointed by channelapp).

Echo: C sockets, each alone in its room, send a message and wait for it to come back through
the room's group (``group_send`` -> Redis -> the consumer), for D seconds. Fan-out: N sockets
in one room, one sends M messages (bench.fanout's driver).

    python -m bench.channels4 [--connections 50] [--seconds 5] [--sizes 100,1000] [--messages 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from channelapp.autoscale.local import wait_for_port

from bench.common import machine, ms, pct, table
from bench.fanout import fan_out
from devtools.paths import REPO
from devtools.procs import free_port
from devtools.redis import RedisServer

PROJECT = REPO / "examples" / "channels4" / "mysite"
APP = "mysite.asgi:application"
SERVERS = (
    ("daphne + channels_redis", "daphne", "channels_redis"),
    ("daphne + channelapp layer", "daphne", "channelapp"),
    ("channelapp asgi + channelapp layer", "channelapp", "channelapp"),
)


def start(
    server: str, layer: str, redis_url: str, logs: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.channels4_settings",
        "BENCH_LAYER": layer,
        "BENCH_REDIS_URL": redis_url,
        "PYTHONPATH": f"{PROJECT}{os.pathsep}{REPO}",
    }
    if server == "daphne":
        exe = shutil.which("daphne") or str(Path(sys.executable).parent / "daphne")
        argv = [exe, "-b", "127.0.0.1", "-p", str(port), APP]
    else:
        env.update(CHANNELAPP_REDIS_URLS=redis_url, CHANNELAPP_KEY_PREFIX="bench4")
        argv = [sys.executable, "-m", "channelapp", "--log-level", "WARNING", "asgi", APP,
                "--port", str(port)]  # fmt: skip
    with (logs / f"{server}-{layer}.log").open("ab") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    wait_for_port(port, 30)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


async def echo(base: str, connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = 0.0

    async def client(http: aiohttp.ClientSession, i: int) -> None:
        async with http.ws_connect(f"{base}/ws/chat/echo{i}/") as ws:
            payload = json.dumps({"message": f"from connection {i}"})
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                await ws.send_str(payload)
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    errors.append(f"connection {i}: {msg.type.name} {msg.data}")
                    return
                latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        stop_at = time.perf_counter() + 1.0  # warm-up
        await asyncio.gather(*(client(http, i) for i in range(connections)))
        latencies.clear()
        errors.clear()
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(http, i) for i in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "rate": len(latencies) / elapsed,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "errors": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    echoes: dict[str, dict[str, float]] = {}
    fanouts: dict[tuple[str, int], dict[str, Any]] = {}
    redis = RedisServer().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-channels4-"))
    try:
        for label, server, layer in SERVERS:
            proc, port = start(server, layer, redis.url, logs)
            try:
                base = f"ws://127.0.0.1:{port}"
                echoes[label] = asyncio.run(echo(base, args.connections, args.seconds))
                for size in sizes:
                    url = f"{base}/ws/chat/room{size}/"
                    fanouts[(label, size)] = asyncio.run(fan_out(url, size, args.messages))
            finally:
                stop(proc)
            redis.command("FLUSHALL")
            print(f"{label} done", flush=True)
    finally:
        redis.cleanup()
        shutil.rmtree(logs, ignore_errors=True)
    base_label = SERVERS[0][0]
    print(f"\n# Tutorial chat, echo through the room's group, {args.connections} sockets, "
          f"{args.seconds:g} s ({machine()})")  # fmt: skip
    base_rate = echoes[base_label]["rate"]
    rows = [
        [
            label,
            f"{r['rate']:,.0f}",
            ms(r["p50"]),
            ms(r["p99"]),
            f"{r['rate'] / base_rate:.2f}x",
            str(int(r["errors"])),
        ]
        for label, r in echoes.items()
    ]
    print(table(["server", "round trips/s", "p50 ms", "p99 ms", "vs daphne + channels_redis",
                 "sockets lost"], rows))  # fmt: skip
    print(f"\n# Tutorial chat, room fan-out, {args.messages} messages back to back")
    rows = []
    for size in sizes:
        theirs = fanouts[(base_label, size)]["rate"]
        for label, _, _ in SERVERS:
            r = fanouts[(label, size)]
            rows.append(
                [
                    f"{size:,}",
                    label,
                    f"{r['rate']:,.0f}",
                    f"{int(r['delivered']):,} / {int(r['expected']):,}",
                    f"{r['seconds']:.2f}",
                    f"{r['rate'] / theirs:.2f}x" if theirs else "-",
                    r["problems"],
                ]
            )
    print(table(["room", "server", "deliveries/s", "delivered", "seconds",
                 "vs daphne + channels_redis", "sockets refused / closed"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
