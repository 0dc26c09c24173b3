"""Channel layers: Redis (sharded) for production, in-memory for one process."""

from channelapp.layer.base import (
    BaseChannelLayer,
    ChannelFull,
    ChannelLayerError,
    ChannelStatistics,
    Message,
    MessageTooLarge,
    ShardUnavailable,
    WorkerReport,
)
from channelapp.layer.factory import layer_from_settings
from channelapp.layer.memory import InMemoryChannelLayer
from channelapp.layer.monitor import LayerMonitor, RedisMonitor
from channelapp.layer.names import InvalidChannelName
from channelapp.layer.redis import RedisChannelLayer

__all__ = [
    "BaseChannelLayer",
    "ChannelFull",
    "ChannelLayerError",
    "ChannelStatistics",
    "InMemoryChannelLayer",
    "InvalidChannelName",
    "LayerMonitor",
    "Message",
    "MessageTooLarge",
    "RedisChannelLayer",
    "RedisMonitor",
    "ShardUnavailable",
    "WorkerReport",
    "layer_from_settings",
]
