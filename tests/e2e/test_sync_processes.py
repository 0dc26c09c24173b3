"""Worker processes with sync consumers, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


async def test_a_sync_consumer_stuck_past_the_shutdown_timeout_does_not_keep_the_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Its thread cannot be stopped; the worker exits without it instead of waiting for it
    forever at interpreter exit."""
    mark = tmp_path / "stuck"
    env = {
        "CHANNELAPP_REDIS_URLS": redis_server.url,
        "CHANNELAPP_SHUTDOWN_TIMEOUT": "1",
        "CHANNELAPP_RESPONSE_TIMEOUT": "3",  # the protocol server stops soon after, too
        "STUCK_MARK": str(mark),
    }
    app = "tests.support.apps:stuck_sync"
    worker = AppProcess("worker", app, env, tmp_path)
    with running(AppProcess("protocol", app, env, tmp_path), worker) as (proto, _):
        async with aiohttp.ClientSession() as client:
            request = asyncio.ensure_future(client.get(proto.url + "/stuck"))
            try:
                deadline = time.monotonic() + 15
                while not mark.exists():
                    assert time.monotonic() < deadline, worker.log()
                    await asyncio.sleep(0.05)
                worker.terminate()
                t0 = time.monotonic()
                returncode = await asyncio.to_thread(worker.wait, 15)
                assert time.monotonic() - t0 < 10, worker.log()
                assert returncode == 0, worker.log()
                assert "1 sync consumer(s) still running past the shutdown timeout" in worker.log()
            finally:
                request.cancel()
                with contextlib.suppress(BaseException):
                    await request
