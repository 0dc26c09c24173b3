"""``CHANNELAPP_LOOP`` picks the event loop a process runs on (real processes: a protocol
server and a worker on uvloop echo a WebSocket frame; a wrong value is one clear line)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = pytest.mark.redis


def test_a_protocol_server_and_a_worker_serve_on_uvloop(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"CHANNELAPP_REDIS_URLS": redis_server.url, "CHANNELAPP_LOOP": "uvloop"}
    app = "channelapp.examples.echo:app"
    procs = AppProcess("protocol", app, env, tmp_path), AppProcess("worker", app, env, tmp_path)
    with running(*procs) as (proto, worker):

        async def echo() -> str:
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(f"ws://127.0.0.1:{proto.port}/ws/echo/") as ws:
                    await ws.send_str("on uvloop")
                    return str((await ws.receive(timeout=10)).data)

        assert asyncio.run(echo()) == "on uvloop"
        for proc in (proto, worker):
            assert "event loop: uvloop" in proc.log()


def test_an_unknown_loop_is_refused_in_one_line() -> None:
    env = {**os.environ, "CHANNELAPP_LOOP": "trio"}
    result = subprocess.run(
        [sys.executable, "-m", "channelapp", "protocol", "--port", "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "channelapp protocol: CHANNELAPP_LOOP must be asyncio or uvloop, got 'trio'"
    ]
