"""Sync HTTP consumers: N requests of blocking work, channelapp against daphne + Django / Channels 4.

Same client, same run, same machine: C concurrent aiohttp requests (keep-alive) until N
requests of ``GET /work`` are answered; each runs W ms of blocking work (time.sleep) in a
plain ``def``. Wall time is from the first request to the last answer, after a warm-up;
every answer must be ``200 ok`` (the others are counted as failures).

- channelapp: protocol server process -> Redis -> worker process(es), a plain ``def``
  consumer in the worker's thread pool (its size is the worker's concurrency), 1 and 2
  worker processes (bench/sync_apps.py);
- channelapp + Django: the daphne + Django row's ``def`` view (bench/django_sync_urls.py),
  served by Django's ASGI handler mounted on 1 channelapp worker process
  (``django:bench.django_sync_settings``, the worker's concurrency as above);
- daphne + Django's ASGI handler and a plain ``def`` view;
- daphne + a Channels 4 ``SyncConsumer`` answering ``http.request`` (handlers run
  thread_sensitive, i.e. on one shared thread) (both in bench/daphne_apps.py).

    python -m bench.sync_http [--requests 500] [--concurrency 50] [--work-ms 10]
                              [--worker-concurrency 50] [--async-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import machine, ms, pct, table
from bench.results import save
from bench.websocket import daphne, stop
from devtools.processes import AppProcess
from devtools.redis import RedisServer

DJANGO = "daphne + Django, sync def view"
CHANNELS = "daphne + Channels 4, SyncConsumer"
SHORT = {DJANGO: "Django sync views", CHANNELS: "Channels SyncConsumer"}
SYNC = "channelapp, def"
ON_WORKERS = "channelapp + Django sync def view (ASGI on workers)"


@dataclass
class Run:
    label: str
    wall: float
    requests: int
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.wall if self.wall else float("nan")

    @property
    def p50(self) -> float:
        return pct(self.latencies, 50)

    @property
    def p99(self) -> float:
        return pct(self.latencies, 99)

    @property
    def ok(self) -> bool:
        return not self.failures


async def _send(http: aiohttp.ClientSession, url: str, todo: Iterator[int], run: Run) -> None:
    """One client: the next request once the last one is answered, until ``todo`` runs out."""
    for _ in todo:  # shared by all clients: each request is taken once
        t0 = time.perf_counter()
        try:
            async with http.get(url) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            run.failures.append(repr(exc)[:120])
            continue
        if status != 200 or body != b"ok":
            run.failures.append(f"HTTP {status} {body[:60]!r}")
        else:
            run.latencies.append(time.perf_counter() - t0)


async def drive(label: str, url: str, requests: int, concurrency: int) -> Run:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        warm = Run(label, 0.0, 2 * concurrency)  # opens the connections, warms both ends
        todo = iter(range(warm.requests))
        await asyncio.gather(*(_send(http, url, todo, warm) for _ in range(concurrency)))
        if warm.failures:
            print(f"  warm-up: {len(warm.failures)} failure(s), first: {warm.failures[0]}")
        run = Run(label, 0.0, requests)
        todo = iter(range(requests))
        started = time.perf_counter()
        await asyncio.gather(*(_send(http, url, todo, run) for _ in range(concurrency)))
        run.wall = time.perf_counter() - started
    print(f"{label}: {run.wall:.2f} s, {len(run.failures)} failure(s)", flush=True)
    return run


def expect_concurrency(worker: AppProcess, concurrency: int) -> None:
    """The worker says which concurrency (thread pool size) it runs with in its log."""
    said = re.compile(rf"\(concurrency {concurrency}\b")
    deadline = time.monotonic() + 5
    while not said.search(worker.log()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker did not log concurrency {concurrency}:\n{worker.log()}")
        time.sleep(0.05)


def channelapp_runs(
    app: str,
    label: str,
    env: dict[str, str],
    logs: Path,
    opts: argparse.Namespace,
    counts: tuple[int, ...] = (1, 2),
) -> list[Run]:
    """``app`` behind one protocol server, with each of ``counts`` worker processes in turn
    (1 and then 2 by default; a single count keeps ``label`` as the row's name)."""
    runs: list[Run] = []
    workers: list[AppProcess] = []
    with contextlib.ExitStack() as stack:
        proto = AppProcess("protocol", app, env, logs)
        stack.callback(proto.stop)
        proto.start()
        for n in counts:
            while len(workers) < n:
                worker = AppProcess("worker", app, env, logs)
                stack.callback(worker.stop)
                worker.start()
                expect_concurrency(worker, opts.worker_concurrency)
                workers.append(worker)
            name = label if len(counts) == 1 else f"{label}, {n} worker{'s' if n > 1 else ''}"
            run = asyncio.run(drive(name, f"{proto.url}/work", opts.requests, opts.concurrency))
            for w in workers if not run.ok else []:
                tail = w.log().strip().splitlines()[-3:]
                print(f"  {w.log_path.name} ends:\n    " + "\n    ".join(tail), flush=True)
            runs.append(run)
    return runs


def daphne_run(label: str, app: str, redis_url: str, opts: argparse.Namespace) -> Run:
    proc, port = daphne(app, redis_url)
    try:
        url = f"http://127.0.0.1:{port}/work"
        return asyncio.run(drive(label, url, opts.requests, opts.concurrency))
    finally:
        stop(proc)


def ratio(slow: float, fast: float) -> str:
    value = slow / fast if fast > 0 else math.nan
    return "-" if math.isnan(value) else f"{value:.2f}x"


def compared(theirs: float, ours: float, better: str, worse: str) -> str:
    """'2.10x faster' when ours is the smaller time, '1.35x slower' when it is not."""
    if ours <= theirs:
        return f"{ratio(theirs, ours)} {better}"
    return f"{ratio(ours, theirs)} {worse}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight")
    parser.add_argument("--work-ms", type=float, default=10.0, help="blocking work per request")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="each channelapp worker's concurrency and thread pool size (default: --concurrency)",
    )
    parser.add_argument(
        "--async-baseline",
        action="store_true",
        help="also run channelapp with an async def consumer (await asyncio.sleep)",
    )
    opts = parser.parse_args()
    opts.worker_concurrency = opts.worker_concurrency or opts.concurrency
    os.environ["BENCH_WORK_MS"] = f"{opts.work_ms:g}"  # read by every server's app module
    runs: list[Run] = []
    server = RedisServer()
    logs = Path(tempfile.mkdtemp(prefix="bench-sync-http-"))
    try:
        server.start()
        env = {
            "CHANNELAPP_REDIS_URLS": server.url,
            "CHANNELAPP_SECRET_KEY": secrets.token_urlsafe(32),
            # The same setting as `channelapp worker --concurrency N` (AppProcess builds the
            # command line; expect_concurrency checks that the worker took it).
            "CHANNELAPP_WORKER_CONCURRENCY": str(opts.worker_concurrency),
        }
        runs += channelapp_runs("bench.sync_apps:app", SYNC, env, logs, opts)
        if opts.async_baseline:
            runs += channelapp_runs(
                "bench.sync_apps:async_app", "channelapp, async def", env, logs, opts
            )
        runs += channelapp_runs(
            "django:bench.django_sync_settings", ON_WORKERS, env, logs, opts, counts=(1,)
        )
        runs.append(daphne_run(DJANGO, "django_views", server.url, opts))
        runs.append(daphne_run(CHANNELS, "sync_consumer", server.url, opts))
    finally:
        server.cleanup()
        shutil.rmtree(logs, ignore_errors=True)

    ours = [r for r in runs if r.label.startswith("channelapp")]
    # The reference: channelapp, def, 1 worker (the first channelapp row that answered).
    ref = next((r for r in ours if r.ok), ours[0])
    rows = [
        [
            r.label,
            f"{r.wall:.2f}",
            f"{r.rate:,.0f}",
            ms(r.p50) if r.latencies else "-",
            ms(r.p99) if r.latencies else "-",
            ratio(r.wall, ref.wall),
            f"{len(r.failures)} ({r.failures[0].replace('|', '/')})" if r.failures else "0",
        ]
        for r in runs
    ]
    print(
        f"\n# Sync HTTP, {opts.requests} requests x {opts.work_ms:g} ms blocking work, "
        f"{opts.concurrency} concurrent requests, worker concurrency "
        f"{opts.worker_concurrency} ({machine()})"
    )
    headers = ["server", "wall s", "requests/s", "p50 ms", "p99 ms", f"wall vs {ref.label}"]
    print(table([*headers, "failures"], rows))
    # One line: each sync channelapp row (the async ones if none answered) against both.
    summed = [r for r in ours if r.ok and r.label.startswith(SYNC)] or [r for r in ours if r.ok]
    parts = [f"{r.label}: {len(r.failures)} failures" for r in ours if not r.ok]
    for r in summed:
        against = [
            f"{compared(b.wall, r.wall, 'faster', 'slower')} wall time than {SHORT[b.label]} "
            f"(p99 {compared(b.p99, r.p99, 'lower', 'higher')}"
            f"{'' if b.ok else ', it had failures'})"
            for b in runs
            if b.label in SHORT
        ]
        parts.append(f"{r.label} " + ", ".join(against))
    # The same Django view on channelapp's workers against daphne + Django.
    mounted = next((r for r in runs if r.label == ON_WORKERS and r.ok), None)
    django = next((r for r in runs if r.label == DJANGO), None)
    if mounted and django:
        parts.append(
            f"{mounted.label} {compared(django.wall, mounted.wall, 'faster', 'slower')} wall "
            f"time than {SHORT[DJANGO]} on daphne "
            f"(p99 {compared(django.p99, mounted.p99, 'lower', 'higher')}"
            f"{'' if django.ok else ', it had failures'})"
        )
    print("\nSummary: " + "; ".join(parts) + ".")
    save(
        "sync_http",
        {
            "requests": opts.requests,
            "concurrency": opts.concurrency,
            "work_ms": opts.work_ms,
            "runs": [
                {
                    "system": r.label,
                    "wall": r.wall,
                    "rate": r.rate,
                    "p50": r.p50 if r.latencies else float("nan"),
                    "p99": r.p99 if r.latencies else float("nan"),
                    "failures": len(r.failures),
                }
                for r in runs
            ],
        },
    )


if __name__ == "__main__":
    main()
