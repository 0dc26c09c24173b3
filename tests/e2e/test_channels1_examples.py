"""The Channels 1.x examples ported to channelapp (examples/channels1/), run for real.

Each project gets a migrated SQLite database in a temporary directory (``manage.py
migrate``), then runs as ``python -m channelapp protocol|worker django:<settings>``
processes over real redis-servers, driven by a real HTTP/WebSocket client (aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.processes import ROOT, AppProcess, running
from devtools.redis import RedisServer
from tests.support.layer_state import group_size, keys_matching

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

EXAMPLES = ROOT / "examples" / "channels1"
PASSWORD = "a-password-for-the-tests"


@dataclass
class Project:
    name: str  # the project package: its settings are <name>.settings
    db: Path

    @property
    def dir(self) -> Path:
        return EXAMPLES / self.name

    @property
    def env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": str(self.dir),
            "DJANGO_SETTINGS_MODULE": f"{self.name}.settings",
            f"{self.name.upper()}_DB": str(self.db),
        }

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        proc = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.dir,
            env={**environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"manage.py {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    def shell(self, code: str) -> Any:
        """Run ``code`` in ``manage.py shell``; what it prints last is read as JSON."""
        return json.loads(self.manage("shell", "-v", "0", "-c", code).strip().splitlines()[-1])

    def processes(
        self, shards: list[RedisServer], log_dir: Path, protocols: int = 1, workers: int = 1
    ) -> list[AppProcess]:
        env = {**self.env, "CHANNELAPP_REDIS_URLS": ",".join(s.url for s in shards)}
        app = f"django:{self.name}.settings"
        return [AppProcess("protocol", app, env, log_dir) for _ in range(protocols)] + [
            AppProcess("worker", app, env, log_dir) for _ in range(workers)
        ]


def migrated(name: str, tmp_path: Path) -> Project:
    project = Project(name, tmp_path / f"{name}.sqlite3")
    project.manage("migrate", "--noinput")
    return project


@asynccontextmanager
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies for 127.0.0.1 (as a browser does)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


async def log_in(http: aiohttp.ClientSession, url: str, username: str) -> None:
    """Django's login form: GET for the CSRF token, POST the credentials."""
    async with http.get(url) as r:
        assert r.status == 200
        token = csrf_token(await r.text())
    form = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    async with http.post(url, data=form, allow_redirects=False) as r:
        assert r.status == 302, await r.text()


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 15) -> Any:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def nothing_comes(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.7) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.receive(), wait)


async def settled(check: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.1)


# --- liveblog -----------------------------------------------------------------------------------


@pytest.fixture
def liveblog(tmp_path: Path) -> Project:
    project = migrated("liveblog", tmp_path)
    project.manage(
        "createsuperuser", "--noinput", "--username", "editor", "--email", "e@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )  # fmt: skip
    return project


@pytest.fixture
def liveblog_running(
    liveblog: Project, redis_shards: list[RedisServer], tmp_path: Path
) -> Iterator[tuple[AppProcess, ...]]:
    with running(*liveblog.processes(redis_shards, tmp_path, workers=2)) as procs:
        yield procs


async def test_liveblog_posts_reach_the_sockets_of_their_blog(
    liveblog: Project,
    liveblog_running: tuple[AppProcess, ...],
    redis_shards: list[RedisServer],
) -> None:
    ids = liveblog.shell(
        "import json; from posts.models import Liveblog; "
        "a = Liveblog.objects.create(title='Launch day', slug='launch'); "
        "b = Liveblog.objects.create(title='Elsewhere', slug='elsewhere'); "
        "print(json.dumps([a.id, b.id]))"
    )
    url = liveblog_running[0].url
    async with browser() as http:
        async with http.get(url + "/") as r:  # Django's view, through the worker
            assert r.status == 200 and "Launch day" in await r.text()
        reader = await http.ws_connect(url + "/liveblog/launch/stream/")
        writer = await http.ws_connect(url + "/liveblog/launch/stream/")
        other = await http.ws_connect(url + "/liveblog/elsewhere/stream/")
        await settled(lambda: group_size(redis_shards, f"liveblog-{ids[0]}") == 2, "joined")

        # A post sent over a socket: save_post creates it, Post.save() tells the group.
        await writer.send_json({"post": "We have\nlift-off"})
        for ws in (reader, writer):
            got = await receive_json(ws)
            assert got["html"] == "<p>We have<br>lift-off</p>"
            assert set(got) == {"id", "html", "created"}
        first_id = got["id"]
        await nothing_comes(other)

        # A post made in Django's admin (an HTTP POST with its CSRF token) reaches them too.
        await log_in(http, url + "/admin/login/", "editor")
        async with http.get(url + "/admin/posts/post/add/") as r:
            token = csrf_token(await r.text())
        form = {"liveblog": str(ids[0]), "body": "From the admin", "csrfmiddlewaretoken": token}
        async with http.post(url + "/admin/posts/post/add/", data=form, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
        got = await receive_json(reader)
        assert got["html"] == "<p>From the admin</p>" and got["id"] != first_id
        assert (await receive_json(writer))["id"] == got["id"]

        async with http.get(url + "/liveblog/launch/") as r:  # the page, newest first
            page = await r.text()
        assert page.index("From the admin") < page.index("lift-off")

        # disconnect_blog takes a closed socket out of the group.
        await writer.close()
        await settled(lambda: group_size(redis_shards, f"liveblog-{ids[0]}") == 1, "left")
        for ws in (reader, other):
            await ws.close()
    await settled(lambda: group_size(redis_shards, f"liveblog-{ids[0]}") == 0, "all left")
    for proc in liveblog_running:
        assert "Traceback" not in proc.log(), proc.log()


async def test_a_socket_for_an_unknown_blog_gets_an_error_then_closes(
    liveblog_running: tuple[AppProcess, ...], redis_shards: list[RedisServer]
) -> None:
    async with browser() as http:
        # The connect consumer sends text (which accepts the socket) and close.
        ws = await http.ws_connect(liveblog_running[0].url + "/liveblog/nope/stream/")
        assert await receive_json(ws) == {"error": "bad_slug"}
        msg = await asyncio.wait_for(ws.receive(), 15)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1000
    # Its session and order keys go with it (the disconnect ran).
    await settled(lambda: keys_matching(redis_shards, "channelapp:order:*") == [], "order keys")
    assert keys_matching(redis_shards, "channelapp:session:*") == []


# --- multichat ----------------------------------------------------------------------------------


@pytest.fixture
def multichat(tmp_path: Path) -> Project:
    project = migrated("multichat", tmp_path)
    rooms = project.shell(
        "import json; from django.contrib.auth.models import User; from chat.models import Room; "
        f"[User.objects.create_user(n, password={PASSWORD!r}) for n in ('ann', 'bob')]; "
        "User.objects.filter(username='ann').update(is_staff=True); "
        "print(json.dumps([Room.objects.create(title=t, staff_only=s).id "
        "for t, s in (('Lobby', False), ('Staff', True))]))"
    )
    assert rooms == [1, 2]
    return project


@pytest.fixture
def multichat_running(
    multichat: Project, redis_shards: list[RedisServer], tmp_path: Path
) -> Iterator[tuple[AppProcess, ...]]:
    with running(*multichat.processes(redis_shards, tmp_path, protocols=2, workers=2)) as procs:
        yield procs


async def test_the_chat_page_needs_a_login(multichat_running: tuple[AppProcess, ...]) -> None:
    url = multichat_running[0].url
    async with browser() as http:
        async with http.get(url + "/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/accounts/login/?next=/"
        await log_in(http, url + "/accounts/login/", "bob")
        async with http.get(url + "/") as r:
            page = await r.text()
        assert r.status == 200
        assert 'data-room-id="1">Lobby<' in page and 'data-room-id="2">Staff<' in page


async def test_two_users_chat_in_a_room_across_protocol_servers(
    multichat_running: tuple[AppProcess, ...], redis_shards: list[RedisServer]
) -> None:
    one, two = multichat_running[0], multichat_running[1]
    async with browser() as ann_http, browser() as bob_http:
        await log_in(ann_http, one.url + "/accounts/login/", "ann")
        await log_in(bob_http, two.url + "/accounts/login/", "bob")
        ann = await ann_http.ws_connect(one.url + "/chat/stream/")
        bob = await bob_http.ws_connect(two.url + "/chat/stream/")

        await ann.send_json({"command": "join", "room": "1"})
        assert await receive_json(ann) == {"join": "1", "title": "Lobby"}
        await bob.send_json({"command": "join", "room": "1"})
        assert await receive_json(bob) == {"join": "1", "title": "Lobby"}
        entered = {"room": "1", "message": None, "username": "bob", "msg_type": 4}
        assert await receive_json(ann) == entered

        await bob.send_json({"command": "send", "room": "1", "message": "hello ann"})
        said = {"room": "1", "message": "hello ann", "username": "bob", "msg_type": 0}
        assert await receive_json(ann) == said
        assert await receive_json(bob) == said
        await ann.send_json({"command": "send", "room": 1, "message": "hi bob"})
        for ws in (ann, bob):
            assert (await receive_json(ws))["message"] == "hi bob"

        # Staff only: ann is staff, bob is not.
        await bob.send_json({"command": "join", "room": "2"})
        assert await receive_json(bob) == {"error": "ROOM_ACCESS_DENIED"}
        await ann.send_json({"command": "join", "room": "2"})
        assert await receive_json(ann) == {"join": "2", "title": "Staff"}
        await ann.send_json({"command": "join", "room": "99"})
        assert await receive_json(ann) == {"error": "ROOM_INVALID"}

        await ann.send_json({"command": "leave", "room": "1"})
        left = {"room": "1", "message": None, "username": "ann", "msg_type": 5}
        assert await receive_json(ann) == left  # told to the room before ann leaves it
        assert await receive_json(ann) == {"leave": "1"}
        assert await receive_json(bob) == left
        await bob.send_json({"command": "send", "room": "1", "message": "anyone?"})
        assert (await receive_json(bob))["message"] == "anyone?"
        await nothing_comes(ann)
        await ann.send_json({"command": "send", "room": "1", "message": "not a member"})
        assert await receive_json(ann) == {"error": "ROOM_ACCESS_DENIED"}

        # ws_disconnect leaves the rooms of the session.
        assert group_size(redis_shards, "room-1") == 1 and group_size(redis_shards, "room-2") == 1
        await ann.close()
        await settled(lambda: group_size(redis_shards, "room-2") == 0, "ann left Staff")
        await bob.close()
        await settled(lambda: group_size(redis_shards, "room-1") == 0, "bob left Lobby")
    for proc in multichat_running:
        assert "Traceback" not in proc.log(), proc.log()


async def test_anonymous_sockets_join_no_room(
    multichat_running: tuple[AppProcess, ...], redis_shards: list[RedisServer]
) -> None:
    url = multichat_running[1].url
    async with browser() as http:
        ws = await http.ws_connect(url + "/chat/stream/")  # accepted, as the original was
        await ws.send_json({"command": "join", "room": "1"})
        assert await receive_json(ws) == {"error": "USER_HAS_TO_LOGIN"}
        await ws.send_json({"command": "send", "room": "1", "message": "hi"})
        assert await receive_json(ws) == {"error": "ROOM_ACCESS_DENIED"}
        # A forged session cookie is no login either.
        forged = await http.ws_connect(
            url + "/chat/stream/", headers={"Cookie": "sessionid=forged"}
        )
        await forged.send_json({"command": "join", "room": "1"})
        assert await receive_json(forged) == {"error": "USER_HAS_TO_LOGIN"}
        for socket in (ws, forged):
            await socket.close()
    assert group_size(redis_shards, "room-1") == 0
