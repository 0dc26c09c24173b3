"""Workers publish their load for the autoscaler: real worker processes over a real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from channelapp.layer import RedisChannelLayer
from channelapp.settings import PROTOCOL_CHANNELS

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

ECHO = "channelapp.examples.echo:app"
TTL = 1.5


async def reports(layer: RedisChannelLayer) -> dict[str, dict[str, float]]:
    reading = await layer.load(PROTOCOL_CHANNELS)
    return {k: dict(v) for k, v in reading.workers.items()}


async def test_reports_count_work_and_a_killed_worker_stops_counting(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "CHANNELAPP_REDIS_URLS": redis_server.url,
        "CHANNELAPP_WORKER_CONCURRENCY": "4",
        "CHANNELAPP_WORKER_REPORT_INTERVAL": "0.2",
        "CHANNELAPP_WORKER_REPORT_TTL": str(TTL),
    }
    layer = RedisChannelLayer([redis_server.url])
    procs = (
        AppProcess("protocol", ECHO, env, tmp_path),
        AppProcess("worker", ECHO, env, tmp_path),
        AppProcess("worker", ECHO, env, tmp_path),
    )
    try:
        with running(*procs) as (protocol, first, second):
            deadline = time.monotonic() + 10
            while len(await reports(layer)) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            seen = await reports(layer)
            assert len(seen) == 2, seen
            assert all(r["concurrency"] == 4 for r in seen.values())

            async with aiohttp.ClientSession() as http:

                async def work(n: int) -> int:
                    async with http.get(f"{protocol.url}/work/{n}/?ms=600") as r:
                        return r.status

                pending = asyncio.gather(*(work(n) for n in range(6)))
                busy = await reports(layer)
                while not sum(r["in_flight"] for r in busy.values()) and not pending.done():
                    await asyncio.sleep(0.05)
                    busy = await reports(layer)
                statuses = await pending
            assert statuses == [200] * 6
            assert sum(r["in_flight"] for r in busy.values()) > 0, busy
            done = await reports(layer)
            deadline = time.monotonic() + 5
            while sum(r["handled"] for r in done.values()) < 6 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                done = await reports(layer)
            assert sum(r["handled"] for r in done.values()) >= 6
            handling = sum(r["busy_seconds"] for r in done.values()) / sum(
                r["handled"] for r in done.values()
            )
            assert 0.55 < handling < 1.5, done  # 600 ms of work, plus overhead

            # SIGKILL: no clean stop, no withdrawal; the report must expire on its own.
            assert second.proc is not None
            os.killpg(second.proc.pid, signal.SIGKILL)
            second.proc.wait()
            killed_at = time.monotonic()
            while len(await reports(layer)) > 1 and time.monotonic() - killed_at < 10:
                await asyncio.sleep(0.05)
            gone_after = time.monotonic() - killed_at
            assert len(await reports(layer)) == 1
            assert gone_after <= TTL + 0.5, gone_after
            # The survivor's next beats sweep the dead worker's field out of the hash.
            key = layer.keys.key("workers")
            deadline = time.monotonic() + 2 * TTL + 1
            while redis_server.command("HLEN", key) != ":1" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert redis_server.command("HLEN", key) == ":1"

            # A clean stop withdraws the report at once.
            first.terminate()
            first.wait(30)
            assert await reports(layer) == {}
    finally:
        await layer.close()
