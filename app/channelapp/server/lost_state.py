"""Sockets must not go deaf when a Redis shard restarts without its data.

Managed Redis runs without persistence: after a restart the shard is empty, so the
group memberships, sessions and ordering keys of the open sockets are gone, and a
socket would stay open receiving nothing. The protocol server checks every shard
each ``interval`` seconds; when one has lost its data it closes every socket with
1012 (Service Restart), and clients reconnect and join their groups again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from channelapp import metrics
from channelapp.layer import ChannelLayerError, RedisChannelLayer

if TYPE_CHECKING:
    from channelapp.server.protocol import ProtocolServer

log = logging.getLogger("channelapp.server")

SERVICE_RESTART = 1012  # RFC 6455 registry: the service is restarted, reconnect


async def close_sockets_on_lost_state(server: ProtocolServer, interval: float = 1.0) -> None:
    """Run until cancelled; a no-op for layers that keep no state outside this process."""
    layer = server.layer
    if not isinstance(layer, RedisChannelLayer):
        return
    while True:
        try:
            lost = await layer.shards_that_lost_state()
        except ChannelLayerError as exc:
            log.error("checking the shards for lost state failed: %s", exc)
            lost = []
        if lost:
            sockets = list(server.sockets)
            log.warning(
                "redis shard(s) %s lost their data (restart without persistence?): "
                "closing %d websocket(s) with %d so clients reconnect",
                ", ".join(map(str, lost)),
                len(sockets),
                SERVICE_RESTART,
            )
            metrics.LAYER_STATE_LOST.inc()
            await asyncio.gather(
                *(
                    server.close_socket(ws, SERVICE_RESTART, "channel layer restarted")
                    for ws in sockets
                ),
                return_exceptions=True,
            )
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def watching(server: ProtocolServer, interval: float = 1.0) -> AsyncIterator[None]:
    task = asyncio.create_task(close_sockets_on_lost_state(server, interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
