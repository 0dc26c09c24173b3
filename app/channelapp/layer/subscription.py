"""A channel's messages handed to a callback as they arrive: how a protocol server feeds its
sockets without a waiting task per socket.

``layer.subscribe(channel, deliver, ended)`` calls ``deliver(message)`` for each message of
``channel``, in order, until the subscription is cancelled; ``ended(exc)`` is called once if
the layer stops (it closes, or fails in a way that is not a shard outage, which is waited
out). ``deliver`` runs on the event loop and must not block; what it cannot take now it
queues or refuses itself.

:class:`ReceiveLoop` is the general implementation (a task that receives in a loop). The
Redis layer delivers from its reader of the process's reply list instead, with no task per
subscription (``RedisReceiving.subscribe``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from channelapp.layer.common import Message, ShardUnavailable

log = logging.getLogger("channelapp.layer")

Deliver = Callable[[Message], None]
Ended = Callable[[BaseException], None]

RETRY_SECONDS = 0.5  # after a shard outage, before receiving again


class Subscription(Protocol):
    def cancel(self) -> None:
        """Deliver nothing more (messages still arriving stay in the layer)."""


class ReceiveLoop:
    """A subscription served by a task: ``receive(channel)`` in a loop."""

    def __init__(
        self,
        receive: Callable[[str], Awaitable[Message]],
        channel: str,
        deliver: Deliver,
        ended: Ended,
    ) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(receive, channel, deliver, ended)
        )

    @staticmethod
    async def _run(
        receive: Callable[[str], Awaitable[Message]], channel: str, deliver: Deliver, ended: Ended
    ) -> None:
        while True:
            try:
                message = await receive(channel)
            except ShardUnavailable as exc:
                log.error("receiving on %s: %s", channel, exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except Exception as exc:
                ended(exc)
                return
            try:
                deliver(message)
            except Exception:
                log.exception("delivering a message of %s failed", channel)

    def cancel(self) -> None:
        self._task.cancel()
