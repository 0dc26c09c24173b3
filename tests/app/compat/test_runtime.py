"""Channels 1.x consumers on the runtime: a protocol server and a worker in the test's loop,
over the in-memory layer and over a real redis-server, driven by a real client (aiohttp).

The consumers are plain Channels 1 functions and classes; the routing is a Channels 1
routing list handed to ``App`` as it is.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from channelapp.application import App
from channelapp.compat import Channel, Group, include, route, route_class
from channelapp.compat.exceptions import DenyConnection, WebsocketCloseException
from channelapp.compat.generic.websockets import JsonWebsocketConsumer, WebsocketConsumer
from channelapp.compat.message import Message
from channelapp.compat.sessions import channel_session, enforce_ordering
from channelapp.consumers import Request, Response
from channelapp.routing import path

from devtools.redis import RedisServer
from tests.support.inprocess import Served, serving


@pytest.fixture(params=["memory", "redis"])
def redis_urls(request: pytest.FixtureRequest) -> list[str] | None:
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return [server.url]


@asynccontextmanager
async def running(routing: list[Any], redis_urls: list[str] | None) -> AsyncIterator[Served]:
    async with serving(App(routing), redis_urls=redis_urls) as served:
        yield served


@asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def text(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> str:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return str(msg.data)


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> int:
    """The code of the server's close frame (``ws.close_code`` can read 1006 when the server
    drops the connection before the client's answering close frame is out)."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    return int(msg.data)


async def nothing_comes(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.5) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.receive(), wait)


async def refused(http: aiohttp.ClientSession, url: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(url)
    return err.value.status


# --- consumers ----------------------------------------------------------------------------------

ROOM = r"^/room/(?P<room>[a-z]+)/$"


def accept(message: Message, **kwargs: Any) -> None:
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


def describe(message: Message, **kwargs: Any) -> None:
    message.reply_channel.send(  # type: ignore[union-attr]
        {
            "text": json.dumps(
                {
                    "text": message["text"],
                    "channel": message.channel.name,
                    "path": message.content["path"],
                    "kwargs": kwargs,
                    "reply": message.reply_channel.name,  # type: ignore[union-attr]
                }
            )
        }
    )


def text_then_close(message: Message, code: str) -> None:
    message.reply_channel.send(  # type: ignore[union-attr]
        {"text": f"bye {code}", "close": True if code == "true" else int(code)}
    )


def refuse_with(message: Message, how: str) -> None:
    if how == "deny":
        raise DenyConnection
    reply = {"accept-false": {"accept": False}, "close": {"close": True}}[how]
    message.reply_channel.send(reply)  # type: ignore[union-attr]


def close_on_receive(message: Message) -> None:
    raise WebsocketCloseException(4003)


def fail(message: Message) -> None:
    raise RuntimeError("the consumer failed")


async def test_connect_receive_path_kwargs_and_message_fields(
    redis_urls: list[str] | None,
) -> None:
    routing = [
        route("websocket.connect", accept, path=ROOM),
        route("websocket.receive", describe, path=ROOM),
    ]
    async with running(routing, redis_urls) as served, client() as http:
        ws = await http.ws_connect(served.url + "/room/lobby/")
        await ws.send_str("hello")
        got = json.loads(await text(ws))
        assert got["text"] == "hello"
        assert got["channel"] == "websocket.receive"
        assert got["path"] == "/room/lobby/"
        assert got["kwargs"] == {"room": "lobby"}
        assert got["reply"].startswith("websocket.send.")
        await ws.close()


@pytest.mark.parametrize(("code", "expected"), [("true", 1000), ("4001", 4001)])
async def test_text_before_accept_accepts_and_close_then_closes(
    redis_urls: list[str] | None, code: str, expected: int
) -> None:
    routing = [route("websocket.connect", text_then_close, path=r"^/bye/(?P<code>\w+)/$")]
    async with running(routing, redis_urls) as served, client() as http:
        ws = await http.ws_connect(served.url + f"/bye/{code}/")
        assert await text(ws) == f"bye {code}"
        assert await closed_with(ws) == expected


@pytest.mark.parametrize("how", ["accept-false", "close", "deny"])
async def test_a_connect_consumer_refuses_the_socket(
    redis_urls: list[str] | None, how: str
) -> None:
    routing = [route("websocket.connect", refuse_with, path=r"^/refuse/(?P<how>[-\w]+)/$")]
    async with running(routing, redis_urls) as served, client() as http:
        assert await refused(http, served.url + f"/refuse/{how}/") == 403


async def test_sockets_without_a_connect_route_are_accepted_and_unrouted_frames_dropped(
    redis_urls: list[str] | None,
) -> None:
    routing = [route("websocket.receive", describe, path=ROOM)]
    async with running(routing, redis_urls) as served, client() as http:
        ws = await http.ws_connect(served.url + "/room/abc/")  # receive route, no connect route
        await ws.send_str("x")
        assert json.loads(await text(ws))["kwargs"] == {"room": "abc"}
        other = await http.ws_connect(served.url + "/elsewhere/")  # no route at all
        await other.send_str("dropped")
        await nothing_comes(other)
        for socket in (ws, other):
            await socket.close()


async def test_exceptions_close_the_socket(redis_urls: list[str] | None) -> None:
    routing = [
        route("websocket.receive", close_on_receive, path=r"^/close/$"),
        route("websocket.receive", fail, path=r"^/fail/$"),
        route("websocket.connect", fail, path=r"^/fail-connect/$"),
    ]
    async with running(routing, redis_urls) as served, client() as http:
        ws = await http.ws_connect(served.url + "/close/")
        await ws.send_str("x")
        assert await closed_with(ws) == 4003
        ws = await http.ws_connect(served.url + "/fail/")
        await ws.send_str("x")
        assert await closed_with(ws) == 1011  # the runtime's answer to a failed consumer
        assert await refused(http, served.url + "/fail-connect/") == 403


# --- channel sessions ---------------------------------------------------------------------------

#: What the disconnect consumer saw of the session, by reply channel (same process).
SEEN_AT_DISCONNECT: dict[str, dict[str, Any]] = {}


@channel_session
def session_connect(message: Message) -> None:
    message.channel_session["frames"] = 0
    message.channel_session["path"] = message["path"]
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


@channel_session
def session_receive(message: Message) -> None:
    session = message.channel_session
    session["frames"] += 1
    reply = {"frames": session["frames"], "path": session["path"], "key": session.session_key}
    message.reply_channel.send({"text": json.dumps(reply)})  # type: ignore[union-attr]


@channel_session
def session_disconnect(message: Message) -> None:
    SEEN_AT_DISCONNECT[message.reply_channel.name] = dict(message.channel_session)  # type: ignore[union-attr]


async def test_the_channel_session_lives_as_long_as_the_socket(
    redis_urls: list[str] | None,
) -> None:
    routing = [
        route("websocket.connect", session_connect),
        route("websocket.receive", session_receive),
        route("websocket.disconnect", session_disconnect),
    ]
    async with running(routing, redis_urls) as served, client() as http:
        ws = await http.ws_connect(served.url + "/s/")
        for n in (1, 2, 3):
            await ws.send_str("x")
            got = json.loads(await text(ws))
            assert (got["frames"], got["path"]) == (n, "/s/")
        key = got["key"]
        assert key.startswith("websocket.send.")
        # Saved when the consumer returns, which may be just after its reply arrived.
        deadline = time.monotonic() + 10
        while dict(await served.worker.sessions.load(key)) != {"frames": 3, "path": "/s/"}:
            assert time.monotonic() < deadline, await served.worker.sessions.load(key)
            await asyncio.sleep(0.02)
        await ws.close()
        deadline = time.monotonic() + 10
        while key not in SEEN_AT_DISCONNECT:
            assert time.monotonic() < deadline, "the disconnect consumer did not run"
            await asyncio.sleep(0.05)
        assert SEEN_AT_DISCONNECT.pop(key) == {"frames": 3, "path": "/s/"}
        await asyncio.sleep(0.2)  # deleted after the disconnect consumer returned
        assert dict(await served.worker.sessions.load(key)) == {}


# --- groups and custom channels -----------------------------------------------------------------


def group_connect(message: Message, room: str) -> None:
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]
    Group(f"room-{room}").add(message.reply_channel)  # type: ignore[arg-type]


def group_receive(message: Message, room: str) -> None:
    command, _, arg = message["text"].partition(":")
    group = Group(f"room-{room}")
    if command == "say":
        group.send({"text": arg})
    elif command == "leave":
        group.discard(message.reply_channel)  # type: ignore[arg-type]
        message.reply_channel.send({"text": "left"})  # type: ignore[union-attr]
    elif command == "end":
        group.send({"text": "the end", "close": 4000})


async def test_groups_broadcast_discard_and_close(redis_urls: list[str] | None) -> None:
    routing = [
        route("websocket.connect", group_connect, path=ROOM),
        route("websocket.receive", group_receive, path=ROOM),
    ]
    async with running(routing, redis_urls) as served, client() as http:
        a = await http.ws_connect(served.url + "/room/one/")
        b = await http.ws_connect(served.url + "/room/one/")
        other = await http.ws_connect(served.url + "/room/two/")
        await a.send_str("say:hi all")
        assert await text(a) == "hi all"
        assert await text(b) == "hi all"
        await b.send_str("leave")
        assert await text(b) == "left"
        await a.send_str("say:still here?")
        assert await text(a) == "still here?"
        await nothing_comes(b)
        await nothing_comes(other, 0.1)
        await a.send_str("end")
        assert await text(a) == "the end"
        assert await closed_with(a) == 4000
        await nothing_comes(b, 0.1)
        for socket in (b, other):
            await socket.close()


def forward(message: Message) -> None:
    command, _, arg = message["text"].partition(" ")
    payload = {"command": command, "arg": arg, "reply_channel": message.content["reply_channel"]}
    Channel("test.commands").send(payload)


def upper(message: Message) -> None:
    message.reply_channel.send({"text": message["arg"].upper()})  # type: ignore[union-attr]


def repeat(message: Message, times: str) -> None:
    message.reply_channel.send({"text": message["arg"] * int(times)})  # type: ignore[union-attr]


async def test_custom_channels_are_routed_on_any_key_of_their_messages(
    redis_urls: list[str] | None,
) -> None:
    routing = [
        route("websocket.receive", forward),
        include(
            [
                route("test.commands", upper, command=r"^up$"),
                route("test.commands", repeat, command=r"^x(?P<times>\d)$"),
            ]
        ),
    ]
    async with running(routing, redis_urls) as served, client() as http:
        assert "test.commands" in served.worker.channels
        ws = await http.ws_connect(served.url + "/commands/")
        await ws.send_str("up shout")
        assert await text(ws) == "SHOUT"
        await ws.send_str("x3 ab")
        assert await text(ws) == "ababab"
        await ws.send_str("unknown whatever")  # no route matches: logged and dropped
        await nothing_comes(ws)
        await ws.close()


def enlist(message: Message) -> None:
    Group("workers").add("test.jobs")  # a group of a custom channel, not of sockets
    Group("workers").send({"text": message["text"], "reply_channel": message["reply_channel"]})


def job(message: Message) -> None:
    message.reply_channel.send({"text": f"job {message['text']}"})  # type: ignore[union-attr]


async def test_groups_of_custom_channels_get_the_content_as_it_is(
    redis_urls: list[str] | None,
) -> None:
    routing = [route("websocket.receive", enlist), route("test.jobs", job)]
    async with running(routing, redis_urls) as served, client() as http:
        ws = await http.ws_connect(served.url + "/jobs/")
        await ws.send_str("thumbnail")
        assert await text(ws) == "job thumbnail"
        await ws.close()


@enforce_ordering(slight=True)
def slow_echo(message: Message) -> None:
    time.sleep(random.uniform(0, 0.02))
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]


async def test_a_sockets_frames_are_handled_in_order_by_many_threads(
    redis_urls: list[str] | None,
) -> None:
    routing = [route("websocket.receive", slow_echo)]
    async with running(routing, redis_urls) as served, client() as http:
        assert served.worker.concurrency > 1
        ws = await http.ws_connect(served.url + "/ordered/")
        for n in range(40):
            await ws.send_str(str(n))
        assert [await text(ws) for _ in range(40)] == [str(n) for n in range(40)]
        await ws.close()


# --- generic consumers --------------------------------------------------------------------------


class RoomConsumer(JsonWebsocketConsumer):
    channel_session = True
    strict_ordering = True

    def connection_groups(self, **kwargs: Any) -> list[str]:
        return [f"json-{kwargs['room']}"]

    def connect(self, message: Message, **kwargs: Any) -> None:
        if kwargs["room"] == "closed":
            self.close()
            return
        message.channel_session["joined"] = kwargs["room"]
        super().connect(message, **kwargs)

    def receive(self, content: Any = None, **kwargs: Any) -> None:
        if content == "whoami":
            self.send({"room": self.message.channel_session["joined"], "path": self.path})
        else:
            self.group_send(f"json-{kwargs['room']}", {"said": content})


class EchoBytes(WebsocketConsumer):
    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        if bytes is not None:
            self.send(bytes=bytes[::-1])
        else:
            self.send(text=f"{text}!", close=text == "bye")


async def test_generic_consumers(redis_urls: list[str] | None) -> None:
    routing = [
        route_class(RoomConsumer, path=r"^/json/(?P<room>[a-z]+)/$"),
        EchoBytes.as_route(path=r"^/echo/$"),
    ]
    async with running(routing, redis_urls) as served, client() as http:
        a = await http.ws_connect(served.url + "/json/red/")
        b = await http.ws_connect(served.url + "/json/red/")
        await a.send_json("whoami")
        assert json.loads(await text(a)) == {"room": "red", "path": "/json/red/"}
        await b.send_json({"n": 1})
        for ws in (a, b):
            assert json.loads(await text(ws)) == {"said": {"n": 1}}
        await a.send_str("not json")
        assert await closed_with(a) == 1011  # JSON that does not decode fails the consumer
        assert await refused(http, served.url + "/json/closed/") == 403
        echo = await http.ws_connect(served.url + "/echo/")
        await echo.send_bytes(b"abc")
        msg = await asyncio.wait_for(echo.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == b"cba"
        await echo.send_str("bye")
        assert await text(echo) == "bye!"
        assert await closed_with(echo) == 1000
        await b.close()


# --- HTTP ---------------------------------------------------------------------------------------


def poll(message: Message, n: str) -> None:
    reply = message.reply_channel
    assert reply is not None
    body = message["body"].decode()
    reply.send(
        {
            "status": 200,
            "headers": [[b"Content-Type", b"text/plain"], [b"X-N", n.encode()]],
            "content": f"{message['method']} {n} {body}".encode(),
            "more_content": True,
        }
    )
    reply.send({"content": b" (more)", "more_content": False})


def runtime_page(request: Request) -> Response:
    return Response.text("served by a channelapp route")


async def test_http_routes_and_what_falls_through(redis_urls: list[str] | None) -> None:
    routing = [
        include(
            [route("http.request", poll, path=r"^/(?P<n>\d+)/$", method=r"^POST$")], path=r"^/poll"
        ),
        path("/other/", runtime_page, protocol="http"),
    ]
    async with running(routing, redis_urls) as served, client() as http:
        async with http.post(served.url + "/poll/7/", data=b"x" * 200_000) as r:
            assert r.status == 200
            assert r.headers["X-N"] == "7"
            assert await r.text() == f"POST 7 {'x' * 200_000} (more)"
        async with http.get(served.url + "/other/") as r:  # a path the routing cannot match
            assert await r.text() == "served by a channelapp route"
        async with http.get(served.url + "/poll/7/") as r:  # path matches, method does not
            assert r.status == 404
