"""The example examples/django/chatsite: a chat behind a Django login, run as
``channelapp protocol`` and ``channelapp worker django:chatsite.settings`` over a real
redis-server. Log in through Django's LoginView (with CSRF), then chat over the socket;
anonymous sockets are refused with 4003."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from devtools.polling import wait_for
from devtools.processes import AppProcess, running
from devtools.redis import RedisServer, redis_servers
from tests.support import chatsite as chatsite_client
from tests.support.chatsite import USERS
from tests.support.django_fixtures import ROOT, DjangoProject

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHATSITE = ROOT / "examples" / "django" / "chatsite"
APP = "django:chatsite.settings"


@pytest.fixture(scope="module")
def chatsite_and_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, RedisServer]]:
    """The example migrated into a new SQLite file, two users, a protocol server and a
    worker; the site's URL and its redis-server."""
    tmp = tmp_path_factory.mktemp("chatsite")
    project = DjangoProject(
        tmp / "db.sqlite3", "chatsite.settings", db_variable="CHATSITE_DB", path=CHATSITE
    )
    project.manage("migrate", "--noinput")
    for username, password in USERS.items():
        project.manage(
            "shell", "-c",
            "from django.contrib.auth.models import User; "
            f"User.objects.create_user({username!r}, password={password!r})",
        )  # fmt: skip
    with redis_servers(1) as (redis,):
        env = {**project.env, "CHANNELAPP_REDIS_URLS": redis.url}
        with running(
            AppProcess("protocol", APP, env, tmp), AppProcess("worker", APP, env, tmp)
        ) as (proto, _):
            yield proto.url, redis


@pytest.fixture(scope="module")
def chatsite(chatsite_and_redis: tuple[str, RedisServer]) -> str:
    return chatsite_and_redis[0]


def group_size(redis: RedisServer, group: str) -> int:
    """Members of a group of the default key prefix."""
    return int(redis.command("ZCARD", f"channelapp:group:{group}").lstrip(":"))


async def log_in(site: str, username: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        return await chatsite_client.log_in(http, site, username)


async def frame(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), 10)


async def test_logged_in_users_chat_in_their_room(
    chatsite_and_redis: tuple[str, RedisServer],
) -> None:
    chatsite, redis = chatsite_and_redis
    ann, bob = await log_in(chatsite, "ann"), await log_in(chatsite, "bob")
    lobby, kitchen = group_size(redis, "chat.lobby"), group_size(redis, "chat.kitchen")
    async with aiohttp.ClientSession() as http:
        ws_ann = await http.ws_connect(
            f"{chatsite}/ws/chat/lobby/", headers={"Cookie": f"sessionid={ann}"}
        )
        ws_bob = await http.ws_connect(
            f"{chatsite}/ws/chat/lobby/", headers={"Cookie": f"sessionid={bob}"}
        )
        ws_elsewhere = await http.ws_connect(
            f"{chatsite}/ws/chat/kitchen/", headers={"Cookie": f"sessionid={bob}"}
        )
        await asyncio.to_thread(
            wait_for,
            lambda: (
                group_size(redis, "chat.lobby") == lobby + 2
                and group_size(redis, "chat.kitchen") == kitchen + 1
            ),
            10,
            0.02,
            "all three sockets in their groups",
        )
        await ws_ann.send_json({"text": "hi bob"})
        for ws in (ws_ann, ws_bob):
            assert (await frame(ws)).json() == {"message": "ann: hi bob"}
        await ws_bob.send_json({"text": "  hello ann  "})
        for ws in (ws_ann, ws_bob):
            assert (await frame(ws)).json() == {"message": "bob: hello ann"}
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws_elsewhere.receive(), 0.5)
        await ws_ann.send_json({"nothing": 1})
        assert (await frame(ws_ann)).json() == {"error": 'send {"text": "..."}'}
        for ws in (ws_ann, ws_bob, ws_elsewhere):
            await ws.close()


async def test_anonymous_sockets_and_pages_are_refused(chatsite: str) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Cookie": "sessionid=0123456789abcdef0123456789abcdef"}):
            ws = await http.ws_connect(f"{chatsite}/ws/chat/lobby/", headers=headers)
            msg = await frame(ws)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4003)
        async with http.get(f"{chatsite}/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/accounts/login/?next=/"
        async with http.post(
            f"{chatsite}/accounts/login/", data={"username": "ann", "password": USERS["ann"]}
        ) as r:
            assert r.status == 403  # no CSRF token
