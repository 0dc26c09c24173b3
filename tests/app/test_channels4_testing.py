"""Channels' own testing tools on channelapp's layer: the tutorial project's tests
(examples/channels4/mysite/chat/tests.py: ``WebsocketCommunicator`` on the async and sync
chat consumers, ``ApplicationCommunicator`` on the background channel,
``ChannelsLiveServerTestCase`` with a live daphne and two WebSocket clients) run by Django's
test runner with ``CHANNEL_LAYERS`` on ``channelapp.channels.RedisChannelLayer`` over a real
redis-server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.redis import redis_servers

pytestmark = [pytest.mark.redis]

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "channels4" / "mysite"


def test_the_projects_channels_tests_pass_on_channelapps_layer(tmp_path: Path) -> None:
    with redis_servers(1) as (redis,):
        env = {
            **os.environ,
            "MYSITE_TEST_REDIS": redis.url,
            "MYSITE_DATABASE": str(tmp_path / "db.sqlite3"),
            "MYSITE_TEST_DATABASE": str(tmp_path / "test.sqlite3"),
        }
        done = subprocess.run(
            [sys.executable, "manage.py", "test", "chat", "-v", "2", "--noinput"],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        # Every message went through this server: the sent counter of the layer's keys.
        sent = redis.command("EXISTS", "mysite-tests:sent")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"^Ran 6 tests", out, re.M), out
    for test in (
        "test_async_consumer",
        "test_sync_consumer",
        "test_other_origin_refused",
        "test_background_channel",
        "test_two_clients_chat",
        "test_room_page",
    ):
        assert re.search(rf"^{test} .* \.\.\. ok$", out, re.M), out
    assert sent == ":1"
