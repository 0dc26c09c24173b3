"""A worker SIGKILLed while it runs a socket's message stalls that socket's stream under 1 s.

One protocol server and two workers as processes over real redis-servers. The socket's
frames are handled in order across both workers; the worker running one of them is
killed; the frames parked behind it must run as soon as its death is known, not after
the parked-message timeout (5 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

APP = "tests.support.apps:slow_echo"
FRAMES = 12


async def test_sigkill_of_the_running_worker_stalls_the_stream_under_a_second(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards)}
    workers = [AppProcess("worker", APP, env, tmp_path) for _ in range(2)]
    with running(AppProcess("protocol", APP, env, tmp_path), *workers) as (proto, *_):
        pids = {w.proc.pid for w in workers}  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{proto.url}/ws/slow/")
            for n in range(FRAMES):  # all at once: both workers pop some of them
                await ws.send_str(str(n))
            killed_at = None
            victim = None
            after: list[tuple[float, str]] = []
            while True:
                try:
                    msg = await asyncio.wait_for(ws.receive(), 15)
                except TimeoutError:
                    break
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                word, n, *pid = msg.data.split()
                if killed_at is None and word == "start" and int(n) == 4:
                    victim = int(pid[0])
                    assert victim in pids
                    os.kill(victim, signal.SIGKILL)  # mid-run of frame 4
                    killed_at = time.monotonic()
                elif killed_at is not None:
                    after.append((time.monotonic() - killed_at, msg.data))
                    if msg.data == f"done {FRAMES - 1}":
                        break
            await ws.close()
        assert killed_at is not None and after, after
        stall, first = after[0]
        assert first.startswith("start"), after[:3]
        # Designed for at most 0.8 s (liveness TTL 0.6 s + a 0.2 s sweep); margin for load.
        assert stall < 1.5, f"next frame started {stall:.2f}s after the kill: {after[:3]}"
        # Frame 4 died with its worker; every later frame ran, in order.
        starts = [int(m.split()[1]) for _, m in after if m.startswith("start")]
        assert starts == sorted(starts) and starts[-1] == FRAMES - 1, after
