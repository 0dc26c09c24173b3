"""Sockets must not go deaf, or miss messages, without being told.

Managed Redis runs without persistence: after a restart the shard is empty, so the
group memberships, sessions and ordering keys of the open sockets are gone, and a
socket would stay open receiving nothing. The protocol server checks every shard
each ``interval`` seconds; when one has lost its data it closes every socket with
1012 (Service Restart), and clients reconnect and join their groups again.

In the same pass it closes with 1013 (Try Again Later) the sockets that lost a
message because this process's shared reply list was full (``reply_capacity``:
the process was stopped or far behind), so their clients know to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from channelapp import metrics
from channelapp.layer import ChannelLayerError, RedisChannelLayer

if TYPE_CHECKING:
    from channelapp.server.protocol import ProtocolServer

log = logging.getLogger("channelapp.server")

SERVICE_RESTART = 1012  # RFC 6455 registry: the service is restarted, reconnect
TRY_AGAIN_LATER = 1013  # RFC 6455 registry: the server is overloaded


async def _close_all(
    server: ProtocolServer, sockets: list[web.WebSocketResponse], code: int, why: str
) -> None:
    await asyncio.gather(
        *(server.close_socket(ws, code, why) for ws in sockets), return_exceptions=True
    )


async def check_shards(server: ProtocolServer, layer: RedisChannelLayer) -> None:
    try:
        lost = await layer.shards_that_lost_state()
    except ChannelLayerError as exc:
        log.error("checking the shards for lost state failed: %s", exc)
        return
    if not lost:
        return
    sockets = list(server.sockets)
    log.warning(
        "redis shard(s) %s lost their data (restart without persistence?): "
        "closing %d websocket(s) with %d so clients reconnect",
        ", ".join(map(str, lost)),
        len(sockets),
        SERVICE_RESTART,
    )
    metrics.LAYER_STATE_LOST.inc()
    await _close_all(server, sockets, SERVICE_RESTART, "channel layer restarted")


async def check_lost_replies(server: ProtocolServer, layer: RedisChannelLayer) -> None:
    try:
        lost = set(await layer.take_lost_replies("websocket.send"))
    except ChannelLayerError as exc:
        log.error("checking for lost replies failed: %s", exc)
        return
    if not lost:
        return
    sockets = [ws for ws, session in list(server.sockets.items()) if session.reply in lost]
    log.warning(
        "%d websocket(s) lost messages: this server's reply list was full (%d messages); "
        "closing them with %d",
        len(sockets),
        layer.reply_capacity,
        TRY_AGAIN_LATER,
    )
    metrics.WEBSOCKETS_LOST_MESSAGES.inc(len(sockets))
    await _close_all(server, sockets, TRY_AGAIN_LATER, "messages lost")


async def watch_layer(server: ProtocolServer, interval: float = 1.0) -> None:
    """Run until cancelled; a no-op for layers that keep no state outside this process."""
    layer = server.layer
    if not isinstance(layer, RedisChannelLayer):
        return
    while True:
        try:
            await check_shards(server, layer)
            await check_lost_replies(server, layer)
        except Exception:  # never stop watching; a Redis that refuses a command says why here
            log.exception("watching the channel layer failed")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def watching(server: ProtocolServer, interval: float = 1.0) -> AsyncIterator[None]:
    task = asyncio.create_task(watch_layer(server, interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
