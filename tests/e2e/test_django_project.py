"""A Django project (admin, auth, sessions, SQLite) run as ``channelapp protocol`` and
``channelapp worker django:tests.support.djangoproject.settings`` over a real redis-server:
Django's views behind the protocol server, CSRF and the login, and sockets that know the
logged-in Django user."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import redis_servers
from tests.support.apps import pattern
from tests.support.django_fixtures import DJANGO_APP, DjangoProject

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
REFUSED = 4003


@pytest.fixture(scope="module")
def site(
    django_project: DjangoProject,
    django_admin: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """One protocol server and one worker (concurrency 2) of the project; its URL."""
    logs = tmp_path_factory.mktemp("django-e2e")
    with redis_servers(1) as (redis,):
        env = {**django_project.env, "CHANNELAPP_REDIS_URLS": redis.url}
        worker_env = {**env, "CHANNELAPP_WORKER_CONCURRENCY": "2"}
        with running(
            AppProcess("protocol", DJANGO_APP, env, logs),
            AppProcess("worker", DJANGO_APP, worker_env, logs),
        ) as (proto, _):
            yield proto.url


def http_client() -> aiohttp.ClientSession:
    # unsafe: keep cookies of a server named by IP address (127.0.0.1).
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(http: aiohttp.ClientSession, url: str, username: str, password: str) -> str:
    """Django's admin login, as a browser does it; the new session's id."""
    async with http.get(f"{url}/admin/login/") as r:
        token = CSRF_FIELD.search(await r.text())
    assert token is not None
    form = {
        "username": username,
        "password": password,
        "csrfmiddlewaretoken": token.group(1),
        "next": "/admin/",
    }
    async with http.post(f"{url}/admin/login/?next=/admin/", data=form, allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/admin/", await r.text()
        return r.cookies["sessionid"].value


async def first_frame(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), 10)


async def test_the_admin_login_page_is_served_by_django(site: str) -> None:
    async with http_client() as http, http.get(f"{site}/admin/login/") as r:
        page = await r.text()
        assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<form action="/admin/login/" method="post" id="login-form">' in page
        assert 'name="username"' in page and 'name="password"' in page
        assert CSRF_FIELD.search(page)
        assert r.cookies["csrftoken"].value


async def test_admin_login_with_the_csrf_token_sets_a_session_and_without_it_is_refused(
    site: str, django_admin: tuple[str, str]
) -> None:
    username, password = django_admin
    async with http_client() as http:
        async with http.post(
            f"{site}/admin/login/", data={"username": username, "password": password}
        ) as r:
            assert r.status == 403 and "CSRF verification failed" in await r.text()
        async with http.get(f"{site}/admin/login/") as r:
            assert r.status == 200  # now with the csrftoken cookie, still no form token
        async with http.post(
            f"{site}/admin/login/", data={"username": username, "password": password}
        ) as r:
            assert r.status == 403 and "CSRF verification failed" in await r.text()
        sessionid = await login(http, site, username, password)
        assert len(sessionid) == 32
        async with http.get(f"{site}/admin/", allow_redirects=False) as r:
            assert r.status == 200 and "Site administration" in await r.text()
    async with (
        http_client() as anonymous,
        anonymous.get(f"{site}/admin/", allow_redirects=False) as r,
    ):
        assert r.status == 302 and r.headers["Location"] == "/admin/login/?next=/admin/"


@pytest.mark.parametrize("path", ["/ws/whoami/", "/ws/whoami-async/"])
async def test_a_socket_with_the_session_cookie_is_greeted_by_username(
    site: str, django_admin: tuple[str, str], path: str
) -> None:
    """Sync consumer (user_from_headers) and async one (await get_user(ctx))."""
    async with http_client() as http:
        sessionid = await login(http, site, *django_admin)
    async with aiohttp.ClientSession() as bare:  # only the cookie we pass
        ws = await bare.ws_connect(f"{site}{path}", headers={"Cookie": f"sessionid={sessionid}"})
        assert (await first_frame(ws)).json() == {"greeting": "hello admin"}
        await ws.send_json({"n": 1})
        if path == "/ws/whoami/":  # later messages carry no cookie: the socket's session does
            assert (await first_frame(ws)).json() == {"user": "admin", "echo": {"n": 1}}
        else:
            error = (await first_frame(ws)).json()["error"]
            assert error.startswith("websocket.receive messages carry no headers")
        await ws.close()


@pytest.mark.parametrize("path", ["/ws/whoami/", "/ws/whoami-async/"])
async def test_a_socket_without_a_valid_session_is_closed_4003(
    site: str, django_admin: tuple[str, str], path: str
) -> None:
    async with http_client() as http:
        sessionid = await login(http, site, *django_admin)
    async with http_client() as http:  # a second browser, which logs out again
        logged_out = await login(http, site, *django_admin)
        async with http.get(f"{site}/admin/") as r:
            token = CSRF_FIELD.search(await r.text())
        assert token is not None
        async with http.post(
            f"{site}/admin/logout/", data={"csrfmiddlewaretoken": token.group(1)}
        ) as r:
            assert r.status == 200 and "Logged out" in await r.text()
    tampered = sessionid[:-1] + ("0" if sessionid[-1] != "0" else "1")
    for cookie in (
        None,
        f"sessionid={secrets.token_hex(16)}",
        f"sessionid={tampered}",
        f"sessionid={logged_out}",
        "sessionid=",
    ):
        headers = {"Cookie": cookie} if cookie else {}
        async with aiohttp.ClientSession() as bare:
            ws = await bare.ws_connect(f"{site}{path}", headers=headers)
            msg = await first_frame(ws)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, REFUSED), cookie
    async with aiohttp.ClientSession() as bare:  # the real one still works
        ws = await bare.ws_connect(f"{site}{path}", headers={"Cookie": f"sessionid={sessionid}"})
        assert (await first_frame(ws)).json() == {"greeting": "hello admin"}
        await ws.close()


async def test_routes_come_before_django_and_django_answers_every_other_path(site: str) -> None:
    async with http_client() as http:
        async with http.get(f"{site}/orm/") as r:  # a channelapp route
            assert r.status == 200 and (await r.json())["users"] >= 1
        async with http.get(f"{site}/no/such/page/") as r:  # Django's own 404 page
            assert r.status == 404 and "<h1>Not Found</h1>" in await r.text()
        async with http.get(f"{site}/admin") as r:  # CommonMiddleware's APPEND_SLASH
            assert r.status == 200 and str(r.url).endswith("/admin/login/?next=/admin/")


async def test_the_django_setting_channelapp_reaches_the_processes(
    site: str, django_admin: tuple[str, str]
) -> None:
    """settings.py: CHANNELAPP = {"max_frame_size": 65536, "allowed_origins": [...]}."""
    async with http_client() as http:
        sessionid = await login(http, site, *django_admin)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{site}/ws/whoami/", headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
        ws = await http.ws_connect(
            f"{site}/ws/whoami/",
            headers={"Origin": "http://allowed.example", "Cookie": f"sessionid={sessionid}"},
            max_msg_size=0,
        )
        assert (await first_frame(ws)).json() == {"greeting": "hello admin"}
        await ws.send_json({"pad": "x" * 60_000})  # under the limit: echoed
        assert len((await first_frame(ws)).json()["echo"]["pad"]) == 60_000
        await ws.send_json({"pad": "x" * 70_000})  # over 65536 bytes
        msg = await first_frame(ws)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009)


async def test_sync_consumers_start_every_message_without_a_leftover_db_connection(
    site: str,
) -> None:
    """CONN_MAX_AGE=0, 50 messages over a worker's 2 threads: each message finds its thread's
    Django connection closed (channelapp.sync ran close_old_connections after the last one)."""
    async with http_client() as http:

        async def one() -> dict[str, object]:
            async with http.get(f"{site}/orm/") as r:
                assert r.status == 200
                result: dict[str, object] = await r.json()
                return result

        results = []
        for _ in range(10):
            results += await asyncio.gather(*(one() for _ in range(5)))
    assert len(results) == 50
    threads = {r["thread"] for r in results}
    assert len(threads) <= 2 and all(str(t).startswith("channelapp-sync") for t in threads)
    assert all(r["open_after_query"] for r in results)  # each did open one
    leftovers = [r for r in results if not r["closed_at_entry"]]
    assert not leftovers, leftovers


async def test_an_8_mib_response_from_a_django_view(site: str) -> None:
    async with http_client() as http, http.get(f"{site}/big/{8 << 20}/") as r:
        assert r.status == 200
        assert await r.read() == pattern(8 << 20)
