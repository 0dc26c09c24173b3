"""A worker's sweep after dead protocol servers runs beside its load reports, not in their way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channelapp.application import App
from channelapp.layer import RedisChannelLayer, WorkerReport
from channelapp.settings import Settings
from channelapp.worker import Worker

from devtools.redis import RedisServer

pytestmark = pytest.mark.redis


async def test_a_long_sweep_does_not_delay_the_load_reports(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = RedisChannelLayer([redis_server.url])
    worker = Worker(App([]), layer, Settings(worker_report_interval=0.01))
    sweep_may_end = asyncio.Event()
    sweeps = 0
    reports = 0
    three_reports = asyncio.Event()
    report = layer.report_worker

    async def counted_report(worker_id: str, load: WorkerReport, ttl: float) -> None:
        nonlocal reports
        reports += 1
        if reports >= 3:
            three_reports.set()
        await report(worker_id, load, ttl)

    async def long_sweep(**_: Any) -> list[str]:
        nonlocal sweeps
        sweeps += 1
        await sweep_may_end.wait()
        return []

    monkeypatch.setattr(layer, "report_worker", counted_report)
    monkeypatch.setattr(layer, "sweep_dead_servers", long_sweep)
    task = asyncio.create_task(worker._report_load())
    try:
        await asyncio.wait_for(three_reports.wait(), 5)
        assert sweeps == 1  # one sweep at a time, still running
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        worker.pool.shutdown(wait=False)
        await layer.close()
