"""``channelapp run --autoscale``: a real protocol server and a pool of real worker processes
growing and shrinking with the queue (it starts its own redis-server)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.redis_fixtures import free_port

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def start_run(port: int, log_path: Path, *flags: str) -> subprocess.Popen[bytes]:
    """``channelapp run`` of the echo app, its own redis-server, output kept in ``log_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELAPP_")}
    env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "channelapp", "run", "channelapp.examples.echo:app",
             "--port", str(port), *flags],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with http.get(f"{url}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url}/readyz not 200 within 20 s")


async def test_pool_grows_with_the_queue_and_shrinks_after(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "run.log"
    proc = start_run(
        port, log_path, "--autoscale", "1..4", "--target-depth", "5",
        "--concurrency", "1", "--scale-down-window", "2",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as http:
            await wait_ready(http, url)

            async def one(n: int) -> int:
                async with http.get(
                    f"{url}/work/{n}/?ms=100", timeout=aiohttp.ClientTimeout(60)
                ) as r:
                    return r.status

            # A worker handles one at a time; 400 requests of 100 ms leave a queue behind it.
            statuses = await asyncio.gather(*(one(n) for n in range(400)))
        assert statuses.count(200) == 400
        deadline = time.monotonic() + 30
        while "-> 1:" not in log_path.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        text = log_path.read_text()
        # Before a handling time is measured the depth rule speaks, after it the demand does.
        assert re.search(r"workers 1 -> [234]: (queue depth \d+ needs|arrivals)", text), text[
            -3000:
        ]
        assert "-> 1:" in text, text[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-3000:]


async def test_a_steady_load_holds_a_steady_pool(tmp_path: Path) -> None:
    """20 requests/s of 100 ms on workers running one at a time need 2 busy workers.

    Sized from depth alone, the pool sawtoothed: the queue empties, workers go, the
    queue refills, workers come back. Sized from demand it settles and stays.
    """
    port = free_port()
    log_path = tmp_path / "run.log"
    proc = start_run(
        port, log_path, "--autoscale", "1..8", "--concurrency", "1", "--scale-down-window", "5"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        latencies: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as http:
            await wait_ready(http, url)

            async def one(n: int) -> int:
                t0 = time.monotonic()
                async with http.get(
                    f"{url}/work/{n}/?ms=100", timeout=aiohttp.ClientTimeout(60)
                ) as r:
                    latencies.append(time.monotonic() - t0)
                    return r.status

            started = time.monotonic()
            steady_from = started + 12
            tasks = []
            mark: int | None = None  # log lines written before the steady phase
            for n in range(20 * 36):  # 36 s at 20/s, open loop
                await asyncio.sleep(max(0.0, started + n / 20 - time.monotonic()))
                tasks.append(asyncio.create_task(one(n)))
                if mark is None and time.monotonic() >= steady_from:
                    mark = len(log_path.read_text().splitlines())
            statuses = await asyncio.gather(*tasks)
        assert statuses.count(200) == len(statuses)
        lines = log_path.read_text().splitlines()
        events = [line for line in lines[mark:] if re.search(r"workers \d+ -> \d+:", line)]
        # Old rule: a change every few seconds (the 5 s window, then the queue refilling).
        assert len(events) <= 2, "\n".join(events) + "\n" + "\n".join(lines[-40:])
        waits = sorted(latencies[len(latencies) // 3 :])
        p99 = waits[int(0.99 * (len(waits) - 1))]
        assert p99 < 1.5, p99  # 100 ms of work; the depth rule let it wait seconds
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-3000:]
