"""The example examples/django/chatsite: a chat behind a Django login, run as
``channelapp protocol`` and ``channelapp worker django:chatsite.settings`` over a real
redis-server. Log in through Django's LoginView (with CSRF), then chat over the socket;
anonymous sockets are refused with 4003."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.django_fixtures import ROOT, DjangoProject
from tests.support.processes import AppProcess, running
from tests.support.redis_fixtures import redis_servers

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHATSITE = ROOT / "examples" / "django" / "chatsite"
APP = "django:chatsite.settings"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
USERS = {"ann": "ann-password-1", "bob": "bob-password-1"}


@pytest.fixture(scope="module")
def chatsite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example migrated into a new SQLite file, two users, a protocol server and a
    worker; the site's URL."""
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
            yield proto.url


async def log_in(site: str, username: str) -> str:
    """The login form, posted as a browser posts it (csrftoken cookie, form token, Origin)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{site}/") as r:  # @login_required sends us to the form
            assert str(r.url) == f"{site}/accounts/login/?next=/"
            token = CSRF_FIELD.search(await r.text())
        assert token is not None
        async with http.post(
            f"{site}/accounts/login/",
            data={
                "username": username,
                "password": USERS[username],
                "csrfmiddlewaretoken": token.group(1),
                "next": "/",
            },
            headers={"Origin": site},
            allow_redirects=False,
        ) as r:
            assert r.status == 302 and r.headers["Location"] == "/", await r.text()
            sessionid = r.cookies["sessionid"].value
        async with http.get(f"{site}/?room=lobby") as r:
            page = await r.text()
            assert r.status == 200 and "<h1>Room lobby</h1>" in page
            assert f'<strong id="username">{username}</strong>' in page
        return sessionid


async def frame(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), 10)


async def test_logged_in_users_chat_in_their_room(chatsite: str) -> None:
    ann, bob = await log_in(chatsite, "ann"), await log_in(chatsite, "bob")
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
        await asyncio.sleep(0.3)  # all three joined their groups
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
