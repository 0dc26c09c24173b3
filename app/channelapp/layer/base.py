"""The channel layer interface every backend implements.

A *channel* is a named, FIFO, at-most-once, non-broadcast queue of messages
(dicts of msgpack-able values). *Groups* are named sets of channels that a
message can be broadcast to. *Statistics* (the ASGI 1.0 extension) report
how much work waits in channels; the autoscaler reads them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from channelapp.layer.common import (
    ChannelFull,
    ChannelLayerError,
    ChannelStatistics,
    Message,
    MessageTooLarge,
    ShardUnavailable,
    WorkerReport,
)
from channelapp.layer.monitor import LayerMonitor
from channelapp.layer.subscription import Deliver, Ended, ReceiveLoop, Subscription

__all__ = [
    "BaseChannelLayer",
    "ChannelFull",
    "ChannelLayerError",
    "ChannelStatistics",
    "Message",
    "MessageTooLarge",
    "ShardUnavailable",
    "WorkerReport",
]


class BaseChannelLayer(abc.ABC):
    """Async channel layer API shared by the Redis and in-memory backends."""

    extensions: tuple[str, ...] = ("groups", "flush", "statistics")

    @abc.abstractmethod
    async def send(self, channel: str, message: Message) -> None:
        """Queue ``message`` on ``channel``. Raises :class:`ChannelFull` when full."""

    @abc.abstractmethod
    async def receive(self, channel: str) -> Message:
        """Wait for and return the next message on ``channel`` (FIFO, at most once)."""

    @abc.abstractmethod
    async def receive_many(
        self, channels: Iterable[str], max_messages: int = 100, timeout: float | None = None
    ) -> list[tuple[str, Message]]:
        """Take up to ``max_messages`` waiting messages from any of ``channels``.

        Waits until at least one message is there, or ``timeout`` seconds
        (then returns ``[]``). Each channel's own order is kept. This is the
        worker's batch receive: one round trip per shard for many messages.
        """

    def subscribe(self, channel: str, deliver: Deliver, ended: Ended) -> Subscription:
        """Call ``deliver(message)`` for every message of ``channel`` as it arrives, in order,
        until the subscription is cancelled; ``ended(exc)`` once if the layer stops serving
        it (see :mod:`channelapp.layer.subscription`). Here: a task receiving in a loop."""
        return ReceiveLoop(self.receive, channel, deliver, ended)

    @abc.abstractmethod
    async def new_channel(self, prefix: str = "specific") -> str:
        """A new process-specific channel name ``prefix.<process>!<random>``."""

    @abc.abstractmethod
    async def group_add(self, group: str, channel: str) -> None: ...

    @abc.abstractmethod
    async def group_discard(self, group: str, channel: str) -> None: ...

    @abc.abstractmethod
    async def group_send(self, group: str, message: Message) -> int:
        """Send ``message`` to every channel of ``group``; returns how many members were full
        (their copy was not queued: counted and logged, not fatal)."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Drop every channel, group and counter of this layer."""

    @abc.abstractmethod
    async def channel_statistics(self, channel: str) -> ChannelStatistics: ...

    @abc.abstractmethod
    async def channels_statistics(self, channels: Iterable[str]) -> dict[str, ChannelStatistics]:
        """Statistics of many channels: one pipelined round trip per shard."""

    @abc.abstractmethod
    async def global_statistics(self) -> ChannelStatistics:
        """Totals over every channel of the layer."""

    async def report_worker(self, worker: str, report: WorkerReport, ttl: float) -> None:
        """Publish ``worker``'s load for ``ttl`` seconds (a no-op where no autoscaler reads it)."""

    async def forget_worker(self, worker: str) -> None:
        """Withdraw ``worker``'s report (a clean stop)."""

    async def unavailable(self) -> list[str]:
        """Why the layer cannot be used now, one line per unreachable part; empty when it can."""
        return []

    def monitor(self) -> LayerMonitor | None:
        """This layer's admin plane: load in one round trip per shard, the worker and server
        registries, lost-state checks and the key space the session and ordering stores
        share. None for a layer that keeps nothing outside its process."""
        return None

    async def close(self) -> None:
        """Release connections and background tasks."""

    async def __aenter__(self) -> BaseChannelLayer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
