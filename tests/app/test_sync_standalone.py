"""Blocking layer calls from a process that runs no worker (a management command, a shell):
with CHANNELAPP_REDIS_URLS they reach the app's sockets, as Channels 1's ``Group.send`` did;
without, one clear error."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import pytest
from channelapp.application import App
from channelapp.consumers import WebsocketConsumer
from channelapp.routing import path

from devtools.processes import ROOT
from devtools.redis import RedisServer
from tests.support.inprocess import serving

pytestmark = pytest.mark.redis

SCRIPT = "from channelapp.compat import Group; Group('news').send({'text': 'from a script'})"


class Reader(WebsocketConsumer):
    groups = ["news"]


def script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELAPP_")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def test_a_script_outside_any_worker_reaches_the_group(redis_server: RedisServer) -> None:
    app = App([path("/news/", Reader, protocol="websocket")])
    async with serving(app, redis_urls=[redis_server.url], key_prefix="site") as served:
        async with aiohttp.ClientSession() as client:
            ws = await client.ws_connect(served.url + "/news/")
            await asyncio.sleep(0.2)  # joined on accept
            done = await asyncio.to_thread(
                script, {"CHANNELAPP_REDIS_URLS": redis_server.url, "CHANNELAPP_KEY_PREFIX": "site"}
            )
            assert done.returncode == 0, done.stderr
            assert await asyncio.wait_for(ws.receive_str(), 10) == "from a script"
            await ws.close()


def test_without_redis_urls_a_script_gets_one_clear_error() -> None:
    done = script({})
    assert done.returncode == 1
    assert "NotInWorker: no channelapp worker runs in this process" in done.stderr
    assert "CHANNELAPP_REDIS_URLS" in done.stderr.splitlines()[-1]
