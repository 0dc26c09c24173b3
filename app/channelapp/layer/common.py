"""What the layer's interface and its monitor both speak: messages, errors, figures.

Kept apart from :mod:`channelapp.layer.base` so the modules under the interface (shards,
serializers, the monitor) can use them without importing the interface itself.
"""

from __future__ import annotations

from typing import Any, TypedDict

Message = dict[str, Any]


class ChannelLayerError(Exception):
    """Base class of the layer's errors."""


class ChannelFull(ChannelLayerError):
    """The channel holds ``capacity`` messages already; the message was not stored."""


class ShardUnavailable(ChannelLayerError):
    """A Redis shard could not be reached; the operation did not happen."""


class MessageTooLarge(ChannelLayerError):
    """The serialized message is larger than the layer accepts."""


class ChannelStatistics(TypedDict):
    messages_pending: int
    """Messages waiting in the channel now."""
    messages_max_age: float
    """Seconds the oldest waiting message has waited (0.0 when empty)."""
    messages_count: int
    """Messages ever sent to the channel (since the counters' expiry)."""
    channel_full_count: int
    """Sends refused with :class:`ChannelFull`."""


class WorkerReport(TypedDict):
    """What one worker process publishes about itself for the autoscaler."""

    in_flight: int
    """Messages its consumers are running now."""
    handled: int
    """Messages it has finished since it started."""
    busy_seconds: float
    """Sum of the time its consumers spent on those messages."""
    concurrency: int
    """Most messages it runs at once."""
