"""A Starlette app served by worker processes behind a protocol server over real Redis:
lifespan startup and shutdown run once in each worker process, and a large request body
streams through to whichever worker took the request."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import ROOT, TEST_SECRET_KEY, AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

APP = "tests.support.asgi_apps:starlette"


async def test_lifespan_once_per_worker_process(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    lifespan_log = tmp_path / "lifespan.log"
    env = {
        "CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards),
        "CHANNELAPP_MAX_BODY_SIZE": str(8 * 1024 * 1024),
        "LIFESPAN_LOG": str(lifespan_log),
    }
    workers = [AppProcess("worker", APP, env, tmp_path) for _ in range(2)]
    with running(AppProcess("protocol", APP, env, tmp_path), *workers) as (proto, *_):
        async with aiohttp.ClientSession() as client:

            async def whoami(data: bytes | None) -> dict[str, int]:
                async with client.post(proto.url + "/whoami", data=data) as response:
                    assert response.status == 200, await response.text()
                    result: dict[str, int] = await response.json()
                    return result

            answers = await asyncio.gather(*(whoami(None) for _ in range(40)))
            big = await whoami(b"q" * (5 * 1024 * 1024))
        assert big["length"] == 5 * 1024 * 1024
        pids = {w.proc.pid for w in workers if w.proc is not None}
        assert {a["pid"] for a in answers} <= pids
    events = Counter(lifespan_log.read_text().split("\n"))
    for pid in pids:
        assert events[f"startup {pid}"] == 1, events
        assert events[f"shutdown {pid}"] == 1, events
    assert sum(events.values()) - events[""] == 4, events


def test_failed_lifespan_startup_stops_the_worker_with_one_line(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "CHANNELAPP_REDIS_URLS": redis_server.url,
        "CHANNELAPP_SECRET_KEY": TEST_SECRET_KEY,
    }
    done = subprocess.run(
        [sys.executable, "-m", "channelapp", "worker", "tests.support.asgi_apps:failing_lifespan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == "channelapp worker: lifespan startup failed: database unreachable", done.stderr
    assert "Traceback" not in done.stderr
