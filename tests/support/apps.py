"""Small apps that test processes load (``tests.support.apps:NAME``)."""

from __future__ import annotations

import asyncio
import os

from channelapp.application import App
from channelapp.consumers import WebsocketConsumer
from channelapp.routing import path


class SlowEcho(WebsocketConsumer):
    """For frame ``n``: sends ``start n <pid>``, works 150 ms, sends ``done n``."""

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        await self.send(text=f"start {text} {os.getpid()}")
        await asyncio.sleep(0.15)
        await self.send(text=f"done {text}")


slow_echo = App([path("/ws/slow/", SlowEcho, protocol="websocket")])
