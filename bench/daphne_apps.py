"""The baselines of bench.websocket: Django Channels echo consumers served by daphne.

``inprocess``: the consumer echoes in the daphne process (no channel layer).
``via_redis``: each frame makes a round trip through channels_redis before it is echoed.
The Redis URL comes from ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")]
                },
            }
        },
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path


class InProcessEcho(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):  # type: ignore[no-untyped-def]
        await self.send(text_data=text_data, bytes_data=bytes_data)


class RedisEcho(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):  # type: ignore[no-untyped-def]
        await self.channel_layer.send(self.channel_name, {"type": "echo", "text": text_data})

    async def echo(self, event):  # type: ignore[no-untyped-def]
        await self.send(text_data=event["text"])


inprocess = URLRouter([path("ws/echo/", InProcessEcho.as_asgi())])
via_redis = URLRouter([path("ws/echo/", RedisEcho.as_asgi())])
