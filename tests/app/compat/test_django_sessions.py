"""Channels 1's Django-facing decorators and helpers, in a Channels 1 project of their own
(tests/app/compat/channels1project) run by ``channelapp dev`` (one process, the in-memory
layer) over a migrated SQLite database: http_session_user, channel_session_user(_from_http),
channel_and_http_session, a generic consumer's http_user, AsgiHandler.encode_response.

Django is set up only in those processes: the test process never configures it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.processes import ROOT, TEST_SECRET_KEY
from devtools.procs import free_port

SETTINGS = "tests.app.compat.channels1project.settings"
PASSWORD = "a-password-for-the-tests"


def environ(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return {**env, "CHANNELS1PROJECT_DB": str(db), "CHANNELAPP_SECRET_KEY": TEST_SECRET_KEY}


def django_admin(db: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "django", *args],
        env={**environ(db), "DJANGO_SETTINGS_MODULE": SETTINGS},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"django-admin {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def set_password(db: Path, username: str, password: str) -> None:
    django_admin(
        db, "shell", "-c",
        "from django.contrib.auth.models import User; "
        f"u, _ = User.objects.get_or_create(username={username!r}); "
        f"u.set_password({password!r}); u.save()",
    )  # fmt: skip


@dataclass
class Dev:
    url: str
    db: Path


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """``channelapp dev django:SETTINGS`` on a free port; its URL."""
    tmp = tmp_path_factory.mktemp("channels1project")
    db = tmp / "db.sqlite3"
    django_admin(db, "migrate", "--noinput")
    set_password(db, "ann", PASSWORD)
    port = free_port()
    log_path = tmp / "dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "channelapp", "dev", f"django:{SETTINGS}", "--port", str(port)],
            env={**environ(db), "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        yield Dev(url, db)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


@asynccontextmanager
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def log_in(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(url + "/login/") as r:
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', await r.text())
    assert found
    form = {"username": "ann", "password": PASSWORD, "csrfmiddlewaretoken": found.group(1)}
    async with http.post(url + "/login/", data=form, allow_redirects=False) as r:
        assert r.status == 302, await r.text()


async def ask(ws: aiohttp.ClientWebSocketResponse, content: Any = "?") -> Any:
    await ws.send_json(content)
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_http_session_user_and_a_django_response(dev: Dev) -> None:
    async with browser() as http:
        async with http.get(dev.url + "/whoami/") as r:
            assert await r.json() == {"user": "", "authenticated": False, "has_http_session": False}
            assert r.cookies["seen"].value == "yes"  # the response's cookies become headers
        await log_in(http, dev.url)
        async with http.get(dev.url + "/whoami/") as r:
            assert r.headers["Content-Type"] == "application/json"
            assert await r.json() == {
                "user": "ann",
                "authenticated": True,
                "has_http_session": True,
            }
        async with http.get(dev.url + "/stream/") as r:  # a streaming response, chunk by chunk
            assert await r.text() == "one,two,three"


async def test_the_user_moves_from_the_http_session_to_the_socket(dev: Dev) -> None:
    async with browser() as http:
        anonymous = await http.ws_connect(dev.url + "/user/")
        assert await ask(anonymous) == {"user": ""}
        await log_in(http, dev.url)
        ws = await http.ws_connect(dev.url + "/user/")
        assert await ask(ws) == {"user": "ann"}
        generic = await http.ws_connect(dev.url + "/generic/")
        assert await ask(generic, {"n": 1}) == {"user": "ann", "got": {"n": 1}}
        # A password change logs the socket out, as it does Django sessions (the channel
        # session's auth hash no longer matches; Django flushes it).
        await asyncio.to_thread(set_password, dev.db, "ann", "a-new-password")
        assert await ask(ws) == {"user": ""}
        assert await ask(ws) == {"user": ""}  # flushed: it stays logged out
        for socket in (anonymous, ws, generic):
            await socket.close()
        await asyncio.to_thread(set_password, dev.db, "ann", PASSWORD)


async def test_channel_and_http_session_keeps_the_http_session_for_later_frames(
    dev: Dev,
) -> None:
    async with browser() as http:
        ws = await http.ws_connect(dev.url + "/both/")
        assert await ask(ws) == {"http_session": None, "user_id": None}
        await log_in(http, dev.url)
        key = next(c.value for c in http.cookie_jar if c.key == "sessionid")
        ws = await http.ws_connect(dev.url + "/both/")
        # Frames carry no cookies: the session key kept at connect finds the session.
        assert await ask(ws) == {"http_session": key, "user_id": "1"}
        await ws.close()
