"""Channel layer throughput and latency: channelapp's RedisChannelLayer against channels_redis.

Both run in this process against the same redis-server, in the same run, with the
same workload: S coroutines send N messages to one channel while R coroutines receive
them (20 + 20 and 1 + 1 by default); each message carries its send time for the latency.
channelapp runs on asyncio's event loop and on uvloop (``CHANNELAPP_LOOP=uvloop``).
redis-benchmark's LPUSH/RPOP rate on the same server, with 16 clients and with one
(unpipelined: one round trip at a time, the bound of 1 + 1), is printed as the ceiling. The
figures are kept for the report (bench.results).

    python -m bench.layer [--messages 40000] [--baseline-messages 6000] [--pairs 20,1]
    python -m bench.layer --sentinel [--messages 40000]   # direct vs redis+sentinel:// URL
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time
from typing import Any

import uvloop

from bench.common import machine, ms, pct, table
from bench.results import save
from devtools.redis import RedisServer

SENDERS = 32
RECEIVERS = 32
UVLOOP = "channelapp, on uvloop"


async def run_workload(
    layer: Any, channel: str, n: int, senders: int = SENDERS, receivers: int = RECEIVERS
) -> dict[str, float]:
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

    started, cpu = time.perf_counter(), time.process_time()
    tasks = [asyncio.create_task(receiver()) for _ in range(receivers)]
    shares = [n // senders + (1 if i < n % senders else 0) for i in range(senders)]
    await asyncio.gather(*(sender(share) for share in shares))
    await done.wait()
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "rate": n / elapsed,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "n": n,
        "elapsed": elapsed,
        "cpu": (time.process_time() - cpu) / n,  # this process's CPU seconds per message
    }


async def bench_channelapp(url: str, n: int, pair: int = SENDERS) -> dict[str, float]:
    from channelapp.layer import RedisChannelLayer

    layer = RedisChannelLayer([url], capacity=n + 10, expiry=120)
    try:
        await run_workload(layer, "warmup", 2000, pair, pair)
        return await run_workload(layer, "bench", n, pair, pair)
    finally:
        await layer.flush()
        await layer.close()


async def bench_channels_redis(url: str, n: int, pair: int = SENDERS) -> dict[str, float]:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[url], capacity=n + 10, expiry=120)
    try:
        await run_workload(layer, "warmup", 500, pair, pair)
        return await run_workload(layer, "bench", n, pair, pair)
    finally:
        await layer.flush()


async def sequential_send(layer: Any, n: int) -> tuple[float, float]:
    """Seconds per send, one at a time: wall time (the round trip) and this process's CPU
    time (the client's own cost, little disturbed by other processes)."""
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await layer.send("sequential", {"type": "bench.message", "i": i})
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await layer.receive_many(["sequential"], n, timeout=1)
    return elapsed / n, cpu / n


async def bench_urls(urls: dict[str, str], n: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """The same workload through each URL (alternating, ``rounds`` times; the best kept), one
    sender's time per send, and how often the layer asked where its server is meanwhile."""
    from channelapp.layer import RedisChannelLayer

    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for label, url in urls.items():
            layer = RedisChannelLayer([url], capacity=n + 10, expiry=120)
            try:
                await run_workload(layer, "warmup", 2000)
                resolver = layer.shards[0].resolver
                asked = resolver.resolutions if resolver else 0
                result = await run_workload(layer, "bench", n)
                sequential = [await sequential_send(layer, 2000) for _ in range(3)]
                result["send"] = min(wall for wall, _ in sequential)
                result["cpu_one"] = min(cpu for _, cpu in sequential)
                result["lookups"] = (resolver.resolutions if resolver else 0) - asked
            finally:
                await layer.flush()
                await layer.close()
            if label not in best:
                best[label] = {**result, "cpu_all": result["cpu"]}
            else:
                best[label]["send"] = min(best[label]["send"], result["send"])
                best[label]["cpu_one"] = min(best[label]["cpu_one"], result["cpu_one"])
                best[label]["cpu_all"] = min(best[label]["cpu_all"], result["cpu"])
                best[label]["lookups"] += result["lookups"]
                if result["rate"] > best[label]["rate"]:
                    for key in ("rate", "p50", "p99", "n", "elapsed"):
                        best[label][key] = result[key]
    return best


def sentinel_vs_direct(n: int) -> None:
    """channelapp's layer on one master, by its address and through Redis Sentinel."""
    from devtools.sentinel import sentinel_group

    with sentinel_group() as group:
        print(f"# one redis-server master (+1 replica, 3 sentinels) on loopback ({machine()})")
        print(f"# {SENDERS} senders, {RECEIVERS} receivers, one channel, best of 3 alternating;")
        print("# one sender: the best of 9 runs of 2000 sends, one at a time")
        urls = {"direct redis:// URL": group.master.url, "redis+sentinel:// URL": group.url()}
        results = asyncio.run(bench_urls(urls, n))
    direct = results["direct redis:// URL"]["rate"]
    rows = [
        [
            label,
            f"{r['rate']:,.0f}",
            ms(r["p50"]),
            ms(r["p99"]),
            f"{r['rate'] / direct:.2f}x",
            f"{r['cpu_all'] * 1e6:.0f}",
            f"{r['send'] * 1e6:.0f}",
            f"{r['cpu_one'] * 1e6:.0f}",
            str(int(r["lookups"])),
        ]
        for label, r in results.items()
    ]
    print()
    headers = ["layer", "messages/s", "p50 ms", "p99 ms", "vs direct", "CPU µs/message"]
    headers += ["one sender: µs/send", "CPU µs/send", "master lookups"]
    print(table(headers, rows))


def redis_benchmark(port: int, clients: int = 16) -> dict[str, float]:
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
            str(200_000 if clients > 1 else 50_000),
            "-q",
            "-c",
            str(clients),
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
    parser.add_argument("--pairs", default="20,1", help="senders (= receivers) per run")
    parser.add_argument(
        "--sentinel", action="store_true", help="direct vs through a redis+sentinel:// URL"
    )
    args = parser.parse_args()
    if args.sentinel:
        sentinel_vs_direct(args.messages)
        return
    pairs = [int(p) for p in args.pairs.split(",")]
    server = RedisServer().start()
    measured: list[dict[str, Any]] = []
    try:
        print(f"# channel layer send+receive, one redis-server on loopback ({machine()})")
        for pair in pairs:
            # One sender waits for each answer: fewer messages make as long a run.
            n, baseline = (
                (args.messages, args.baseline_messages)
                if pair > 1
                else (args.messages // 4, args.baseline_messages // 2)
            )
            ours = asyncio.run(bench_channelapp(server.url, n, pair))
            print(f"{pair} + {pair}: channelapp {ours['rate']:,.0f} msg/s ({n})", flush=True)
            on_uvloop = uvloop.run(bench_channelapp(server.url, n, pair))
            print(f"{pair} + {pair}: on uvloop {on_uvloop['rate']:,.0f} msg/s", flush=True)
            theirs = asyncio.run(bench_channels_redis(server.url, baseline, pair))
            print(f"{pair} + {pair}: channels_redis {theirs['rate']:,.0f} msg/s", flush=True)
            measured.append({"senders": pair, "receivers": pair, "systems": {
                "channelapp": ours, UVLOOP: on_uvloop, "channels_redis": theirs}})  # fmt: skip
        ceiling = redis_benchmark(server.port)
        one_client = redis_benchmark(server.port, clients=1)
    finally:
        server.cleanup()
    rows = []
    for m in measured:
        theirs = m["systems"]["channels_redis"]
        for label, r in m["systems"].items():
            rows.append(
                [
                    f"{m['senders']} + {m['receivers']}",
                    label,
                    f"{r['rate']:,.0f}",
                    ms(r["p50"]),
                    ms(r["p99"]),
                    f"{r['rate'] / theirs['rate']:.1f}x",
                ]
            )
    for clients, rates in (("16 clients", ceiling), ("1 client", one_client)):
        for op, rate in rates.items():
            rows.append([clients, f"redis-benchmark {op} (ceiling)", f"{rate:,.0f}", "-", "-", "-"])
    print()
    print(table(["senders + receivers", "layer", "messages/s", "p50 ms", "p99 ms",
                 "vs channels_redis"], rows))  # fmt: skip
    save("layer", {"pairs": measured, "ceiling": ceiling, "one_client": one_client})


if __name__ == "__main__":
    main()
