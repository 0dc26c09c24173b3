"""Build the layer a process should use from its settings."""

from __future__ import annotations

from channelapp.layer.base import BaseChannelLayer
from channelapp.layer.memory import InMemoryChannelLayer
from channelapp.layer.redis import RedisChannelLayer
from channelapp.settings import Settings


def layer_from_settings(settings: Settings) -> BaseChannelLayer:
    """Redis when ``redis_urls`` is set, else the in-memory layer (one process only)."""
    if settings.redis_urls:
        return RedisChannelLayer(
            settings.redis_urls,
            prefix=settings.key_prefix,
            capacity=settings.channel_capacity,
            reply_capacity=settings.reply_capacity,
            expiry=settings.message_expiry,
            group_expiry=settings.group_expiry,
            password=settings.redis_password,
            encryption_keys=settings.encryption_keys or None,
        )
    return InMemoryChannelLayer(
        capacity=settings.channel_capacity,
        expiry=settings.message_expiry,
        group_expiry=settings.group_expiry,
    )
