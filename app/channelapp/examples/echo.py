"""Echo: the smallest app, used by the end-to-end tests and the WebSocket benchmark.

``/ws/echo/`` echoes every frame; ``/work/<int:n>/?ms=50`` answers ``n`` after
``ms`` milliseconds of (simulated) work; ``/body/`` answers the request body's length.
"""

from __future__ import annotations

import asyncio

from channelapp.application import App
from channelapp.consumers import HttpConsumer, Request, Response, WebsocketConsumer
from channelapp.routing import path


class Echo(WebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        await self.send(text=text, bytes=bytes)


class Work(HttpConsumer):
    async def get(self, request: Request) -> Response:
        ms = float(request.query.get("ms", ["0"])[0])
        if ms > 0:
            await asyncio.sleep(min(ms, 10_000) / 1000)
        return Response.json({"n": request.kwargs["n"]})


class Body(HttpConsumer):
    async def post(self, request: Request) -> Response:
        return Response.json({"length": len(request.body)})


app = App(
    [
        path("/ws/echo/", Echo, protocol="websocket"),
        path("/work/<int:n>/", Work, protocol="http"),
        path("/body/", Body, protocol="http"),
    ]
)
