"""Small apps that test processes load (``tests.support.apps:NAME``)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

from channelapp.application import App
from channelapp.consumers import HttpConsumer, Request, Response, WebsocketConsumer
from channelapp.routing import mount, path
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route


class SlowEcho(WebsocketConsumer):
    """For frame ``n``: sends ``start n <pid>``, works 150 ms, sends ``done n``."""

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        await self.send(text=f"start {text} {os.getpid()}")
        await asyncio.sleep(0.15)
        await self.send(text=f"done {text}")


slow_echo = App([path("/ws/slow/", SlowEcho, protocol="websocket")])


def _stuck(request: object) -> Response:
    """A sync view that never returns (a hung database call): it touches ``STUCK_MARK`` first."""
    with open(os.environ["STUCK_MARK"], "w") as mark:
        mark.write(str(os.getpid()))
    time.sleep(3600)
    return Response.text("never\n")


stuck_sync = App([path("/stuck", _stuck, protocol="http")])


def pattern(n: int) -> bytes:
    """``n`` bytes that are not all alike (a reordered or lost chunk shows)."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (n // len(block) + 1))[:n]


class Big(HttpConsumer):
    """``GET /big/<n>/``: ``n`` bytes of :func:`pattern`; ``POST``: the length and a digest of
    the body."""

    async def get(self, request: Request) -> Response:
        return Response(pattern(request.kwargs["n"]), 200, [("Content-Type", "application/x")])

    async def post(self, request: Request) -> Response:
        digest = hashlib.sha256(request.body).hexdigest()
        return Response.json({"length": len(request.body), "sha256": digest})


class BigFrames(WebsocketConsumer):
    """Echoes every frame; ``send N`` (text) answers with a binary frame of ``N`` bytes."""

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        if text is not None and text.startswith("send "):
            await self.send(bytes=pattern(int(text.split()[1])))
        else:
            await self.send(text=text, bytes=bytes)


async def _starlette_big(request: StarletteRequest) -> StarletteResponse:
    return StarletteResponse(pattern(int(request.path_params["n"])))


large = App(
    [
        path("/big/<int:n>/", Big, protocol="http"),
        path("/ws/big/", BigFrames, protocol="websocket"),
        mount("/asgi", Starlette(routes=[Route("/big/{n:int}", _starlette_big)])),
    ]
)
