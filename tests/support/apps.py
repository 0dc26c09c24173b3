"""Small apps that test processes load (``tests.support.apps:NAME``)."""

from __future__ import annotations

import asyncio
import os
import time

from channelapp.application import App
from channelapp.consumers import Response, WebsocketConsumer
from channelapp.routing import path


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
