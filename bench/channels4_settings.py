"""examples/channels4/mysite's settings for bench.channels4: ``BENCH_LAYER`` picks the channel
layer (``channels_redis`` or ``channelapp``) on ``BENCH_REDIS_URL``; any Host and Origin.

Both layers get a capacity of 100,000: a process's sockets share one list of their messages
in both, and a room's burst (1,000 members x 10 messages) past the tutorial's 100 would be
dropped by ``group_send`` (members at capacity are skipped), which is not what is measured."""

import os

from mysite.settings import *  # noqa: F403

ALLOWED_HOSTS = ["*"]
DEBUG = False
_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
if os.environ.get("BENCH_LAYER") == "channelapp":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channelapp.channels.RedisChannelLayer",
            "CONFIG": {"hosts": [_URL], "capacity": 100_000},
        }
    }
else:
    # Rooms join hundreds of sockets at once: redis-py's pool refuses past 100 connections
    # by default (bench.daphne_apps does the same).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": _URL, "max_connections": 2000}], "capacity": 100_000},
        }
    }
