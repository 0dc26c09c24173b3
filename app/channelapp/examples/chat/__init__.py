"""A multi-room chat: an HTML page over HTTP, WebSockets, rooms as groups.

channelapp dev channelapp.examples.chat:app          # one process, no Redis
channelapp protocol channelapp.examples.chat:app     # with CHANNELAPP_REDIS_URLS set
channelapp worker channelapp.examples.chat:app
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from channelapp.application import App
from channelapp.consumers import HttpConsumer, JsonWebsocketConsumer, Request, Response
from channelapp.routing import path
from channelapp.settings import Settings

ROOM = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_TEXT = 2000


class IndexPage(HttpConsumer):
    async def get(self, request: Request) -> Response:
        page = resources.files("channelapp.examples.chat").joinpath("index.html").read_text()
        return Response.html(page)


class ReconnectScript(HttpConsumer):
    """The page's reconnecting WebSocket (reconnect.js), usable by any page."""

    async def get(self, request: Request) -> Response:
        script = resources.files("channelapp.examples.chat").joinpath("reconnect.js").read_bytes()
        return Response(
            script,
            200,
            [("Content-Type", "text/javascript; charset=utf-8"), ("Cache-Control", "no-cache")],
        )


FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#3358d4"/>'
    '<path d="M8 10h16v9H14l-5 4v-4H8z" fill="#fff"/></svg>'
)


class Favicon(HttpConsumer):
    """The page's icon (also at /favicon.ico, where browsers look without a link)."""

    async def get(self, request: Request) -> Response:
        return Response(
            FAVICON.encode(),
            200,
            [("Content-Type", "image/svg+xml"), ("Cache-Control", "max-age=86400")],
        )


class RoomInfo(HttpConsumer):
    async def get(self, request: Request) -> Response:
        room = request.kwargs["room"]
        if not ROOM.match(room):
            return Response.json({"error": "room names are 1-40 letters, digits, - or _"}, 400)
        return Response.json({"room": room, "group": f"chat.{room}"})


class ChatConsumer(JsonWebsocketConsumer):
    """Joins the room's group on connect; every message is broadcast to the room."""

    groups = ["chat.{room}"]

    async def connect(self) -> None:
        if not ROOM.match(self.kwargs["room"]):
            await self.reject()
            return
        await self.accept()
        assert self.session is not None
        self.session["room"] = self.kwargs["room"]
        self.session["sent"] = 0

    async def receive_json(self, content: Any) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("message"), str):
            await self.send_json({"error": 'send {"message": "...", "user": "..."}'})
            return
        text = content["message"].strip()[:MAX_TEXT]
        if not text:
            return
        user = str(content.get("user") or "anonymous")[:40]
        assert self.session is not None
        self.session["sent"] = int(self.session.get("sent", 0)) + 1
        await self.group_send_json(
            f"chat.{self.kwargs['room']}",
            {"room": self.kwargs["room"], "user": user, "message": text},
        )


app = App(
    [
        path("/", IndexPage, protocol="http"),
        path("/reconnect.js", ReconnectScript, protocol="http"),
        path("/favicon.svg", Favicon, protocol="http"),
        path("/favicon.ico", Favicon, protocol="http"),
        path("/api/rooms/<room>/", RoomInfo, protocol="http"),
        path("/ws/chat/<room>/", ChatConsumer, protocol="websocket"),
    ],
    settings=Settings(allowed_origins=[]),
)
