"""The project as ported from Channels 1.x: CHANNEL_LAYERS kept, no CHANNELAPP_ROUTING."""

from tests.support.djangoproject.settings import *  # noqa: F403

del CHANNELAPP_ROUTING  # noqa: F821
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_redis.RedisChannelLayer",
        "CONFIG": {"hosts": [("localhost", 6379)]},
        "ROUTING": "tests.support.djangoproject.routing.routes",
    }
}
