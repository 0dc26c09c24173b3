"""Channel layer throughput and latency: channelapp's RedisChannelLayer against channels_redis.

Both run in this process against the same redis-server, in the same run, with the
same workload: SENDERS coroutines send N messages to one channel while RECEIVERS
coroutines receive them; each message carries its send time for the latency.
redis-benchmark's LPUSH/RPOP rate on the same server is printed as the ceiling.

    python -m bench.layer [--messages 40000] [--baseline-messages 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time
from typing import Any

from bench.common import machine, ms, pct, table
from tests.support.redis_fixtures import RedisServer

SENDERS = 32
RECEIVERS = 32


async def run_workload(layer: Any, channel: str, n: int) -> dict[str, float]:
    latencies: list[float] = []
    received = 0
    done = asyncio.Event()

    async def sender(count: int) -> None:
        for _ in range(count):
            await layer.send(channel, {"type": "bench.message", "t": time.perf_counter()})

    async def receiver() -> None:
        nonlocal received
        while received < n:
            message = await layer.receive(channel)
            latencies.append(time.perf_counter() - message["t"])
            received += 1
            if received >= n:
                done.set()

    started = time.perf_counter()
    receivers = [asyncio.create_task(receiver()) for _ in range(RECEIVERS)]
    shares = [n // SENDERS + (1 if i < n % SENDERS else 0) for i in range(SENDERS)]
    await asyncio.gather(*(sender(share) for share in shares))
    await done.wait()
    elapsed = time.perf_counter() - started
    for task in receivers:
        task.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    return {
        "rate": n / elapsed,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "n": n,
        "elapsed": elapsed,
    }


async def bench_channelapp(url: str, n: int) -> dict[str, float]:
    from channelapp.layer import RedisChannelLayer

    layer = RedisChannelLayer([url], capacity=n + 10, expiry=120)
    try:
        await run_workload(layer, "warmup", 2000)
        return await run_workload(layer, "bench", n)
    finally:
        await layer.flush()
        await layer.close()


async def bench_channels_redis(url: str, n: int) -> dict[str, float]:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[url], capacity=n + 10, expiry=120)
    try:
        await run_workload(layer, "warmup", 500)
        return await run_workload(layer, "bench", n)
    finally:
        await layer.flush()


def redis_benchmark(port: int) -> dict[str, float]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    out = subprocess.run(
        [
            binary,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "lpush,rpop",
            "-n",
            "200000",
            "-q",
            "-c",
            "16",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = {}
    for line in out.replace("\r", "\n").splitlines():
        m = re.match(r"(\w+): ([\d.]+) requests per second", line.strip())
        if m:
            rates[m.group(1)] = float(m.group(2))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--baseline-messages", type=int, default=6_000)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        print(f"# channel layer send+receive, one redis-server on loopback ({machine()})")
        print(f"# {SENDERS} senders, {RECEIVERS} receivers, one channel")
        ours = asyncio.run(bench_channelapp(server.url, args.messages))
        print(f"channelapp: {ours['rate']:.0f} msg/s over {ours['n']} messages", flush=True)
        theirs = asyncio.run(bench_channels_redis(server.url, args.baseline_messages))
        print(f"channels_redis: {theirs['rate']:.0f} msg/s over {theirs['n']} messages", flush=True)
        ceiling = redis_benchmark(server.port)
    finally:
        server.cleanup()
    rows = [
        [
            "channelapp RedisChannelLayer",
            f"{ours['rate']:,.0f}",
            ms(ours["p50"]),
            ms(ours["p99"]),
            f"{ours['rate'] / theirs['rate']:.1f}x",
        ],
        [
            "channels_redis 4.3 RedisChannelLayer",
            f"{theirs['rate']:,.0f}",
            ms(theirs["p50"]),
            ms(theirs["p99"]),
            "1.0x",
        ],
    ]
    for op, rate in ceiling.items():
        rows.append([f"redis-benchmark {op} (ceiling, 16 clients)", f"{rate:,.0f}", "-", "-", "-"])
    print()
    print(table(["layer", "messages/s", "p50 ms", "p99 ms", "vs channels_redis"], rows))


if __name__ == "__main__":
    main()
