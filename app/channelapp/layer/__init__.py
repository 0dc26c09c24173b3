"""Channel layers: Redis (sharded) for production, in-memory for one process."""

from channelapp.layer.base import (
    BaseChannelLayer,
    ChannelFull,
    ChannelLayerError,
    ChannelStatistics,
    Message,
    MessageTooLarge,
    ShardUnavailable,
)
from channelapp.layer.names import InvalidChannelName

__all__ = [
    "BaseChannelLayer",
    "ChannelFull",
    "ChannelLayerError",
    "ChannelStatistics",
    "InMemoryChannelLayer",
    "InvalidChannelName",
    "Message",
    "MessageTooLarge",
    "RedisChannelLayer",
    "ShardUnavailable",
]


def __getattr__(name: str) -> object:
    # Imported lazily so that the in-memory layer does not need redis installed.
    if name == "RedisChannelLayer":
        from channelapp.layer.redis import RedisChannelLayer

        return RedisChannelLayer
    if name == "InMemoryChannelLayer":
        from channelapp.layer.memory import InMemoryChannelLayer

        return InMemoryChannelLayer
    raise AttributeError(name)
