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
            },
            # Rooms join hundreds of sockets at once: redis-py's pool refuses past 100
            # connections by default, so the fan-out consumer gets a larger pool.
            "fanout": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [
                        {
                            "address": os.environ.get(
                                "BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"
                            ),
                            "max_connections": 2000,
                        }
                    ]
                },
            },
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


class FanoutChat(AsyncWebsocketConsumer):
    """A chat room as Channels tutorials write it: group_add on connect, group_send per message."""

    channel_layer_alias = "fanout"

    async def connect(self):  # type: ignore[no-untyped-def]
        self.group = "fanout_" + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):  # type: ignore[no-untyped-def]
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):  # type: ignore[no-untyped-def]
        await self.channel_layer.group_send(self.group, {"type": "chat.message", "text": text_data})

    async def chat_message(self, event):  # type: ignore[no-untyped-def]
        await self.send(text_data=event["text"])


fanout = URLRouter([path("ws/chat/<str:room>/", FanoutChat.as_asgi())])
