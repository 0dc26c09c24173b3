"""The baselines of the benchmarks: Django and Django Channels apps served by daphne.

bench.websocket: ``inprocess``, the consumer echoes in the daphne process (no channel
layer); ``via_redis``, each frame makes a round trip through channels_redis before it is
echoed. bench.fanout: ``fanout``. The Redis URL comes from ``BENCH_REDIS_URL``.

bench.sync_http: ``django_views``, Django's ASGI handler and a plain ``def`` view (the
``work_view`` of bench/django_sync_urls.py, which channelapp's workers serve too); and
``sync_consumer``, a Channels 4 ``SyncConsumer`` answering HTTP. Both block for
``BENCH_WORK_MS`` milliseconds (time.sleep) per request on ``/work``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,  # bench.sync_http's Django view (urlpatterns below)
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

from channels.consumer import SyncConsumer
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

from bench.django_sync_urls import work_view


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


WORK_SECONDS = float(os.environ.get("BENCH_WORK_MS", "10")) / 1000


urlpatterns = [path("work", work_view)]  # the view bench.django_sync_settings serves too
django_views = get_asgi_application()


class WorkSyncConsumer(SyncConsumer):
    """HTTP on a Channels 4 SyncConsumer (channels.generic.http has an async consumer only).

    Its handlers run through database_sync_to_async, which is thread_sensitive: outside a
    ThreadSensitiveContext they share one thread, as every SyncConsumer does. No channel
    layer (an HTTP request needs none): no channels_redis receive per request.
    """

    channel_layer_alias = "no-layer-for-http"  # not in CHANNEL_LAYERS: channel_layer is None

    def http_request(self, message: dict[str, Any]) -> None:
        if message.get("more_body"):
            return
        time.sleep(WORK_SECONDS)
        self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        self.send({"type": "http.response.body", "body": b"ok"})
        raise StopConsumer

    def http_disconnect(self, message: dict[str, Any]) -> None:
        raise StopConsumer


sync_consumer = URLRouter([path("work", WorkSyncConsumer.as_asgi())])
