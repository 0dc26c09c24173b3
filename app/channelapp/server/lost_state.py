"""Sockets must not go deaf, or miss messages, without being told.

Managed Redis runs without persistence: after a restart the shard is empty, so the
group memberships, sessions and ordering keys of the open sockets are gone, and a
socket would stay open receiving nothing. The protocol server checks every shard
each ``interval`` seconds; when one has lost its data it closes every socket with
1012 (Service Restart), and clients reconnect and join their groups again.

In the same pass it closes with 1013 (Try Again Later) the sockets that lost a
message because this process's shared reply list was full (``reply_capacity``:
the process was stopped or far behind), so their clients know to reconnect.

Each protocol server also beats a heartbeat (``HEARTBEAT`` seconds, counted dead
``SERVER_TTL`` seconds after the last) and sweeps after servers whose heartbeat
stopped (killed): their sockets leave their groups and their reply backlog goes,
instead of broadcasts piling up for a day (workers sweep too). A server swept while
alive (its event loop stalled past the TTL) closes its sockets with 1012 so they
reconnect and join their groups again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator

from aiohttp import web

from channelapp import metrics
from channelapp.layer import ChannelLayerError, LayerMonitor
from channelapp.server.host import SocketHost
from channelapp.spec import SERVICE_RESTART, TRY_AGAIN_LATER

log = logging.getLogger("channelapp.server")

HEARTBEAT = 1.0  # seconds between a protocol server's heartbeats
SERVER_TTL = 5.0  # seconds after its last heartbeat a protocol server counts as dead (a loop
# stalled that long is taken for dead: its sockets are closed with 1012 and reconnect)


async def _close_all(
    server: SocketHost, sockets: list[web.WebSocketResponse], code: int, why: str
) -> None:
    await asyncio.gather(
        *(server.close_socket(ws, code, why) for ws in sockets), return_exceptions=True
    )


async def check_shards(server: SocketHost, layer: LayerMonitor) -> None:
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


# Longest a handshake waits for a check of the shards (a stalled shard answers after the
# socket timeout, seconds): then it goes on, and the check goes on without it.
SETTLE_WAIT = 0.3

# Per server: its check of the shards under way or last done (its result: a shard stayed
# unchecked), when it started (monotonic), and whether the check before it failed so.
_checks: weakref.WeakKeyDictionary[SocketHost, tuple[asyncio.Task[bool], float, bool]] = (
    weakref.WeakKeyDictionary()
)


async def _check(server: SocketHost, layer: LayerMonitor) -> bool:
    await check_shards(server, layer)
    return layer.state_unchecked()


def shared_check(server: SocketHost, layer: LayerMonitor) -> tuple[asyncio.Task[bool], float]:
    """The check of the shards under way, or a new one: one at a time per server, shared by
    the handshakes and the periodic watch. With it, how long a handshake may wait for it."""
    entry = _checks.get(server)
    if entry is not None and not entry[0].done():
        task, started, failed_before = entry
    else:
        last = entry[0] if entry is not None else None
        failed_before = bool(
            last is not None and not last.cancelled() and not last.exception() and last.result()
        )
        task = asyncio.create_task(_check(server, layer))
        started = time.monotonic()
        _checks[server] = (task, started, failed_before)
    # While the shards stay unreachable, handshakes do not wait for each retry.
    wait = 0.0 if failed_before else max(0.0, started + SETTLE_WAIT - time.monotonic())
    return task, wait


async def settle(server: SocketHost) -> None:
    """Before a new socket's connect: if a shard failed or dropped a connection since it was
    last checked (it may have restarted empty), check it now, so the sockets that lost
    their state are closed before the new one opens, and the new one is not closed for a
    loss that predates it. One check at a time, shared by the handshakes waiting on it; a
    handshake waits for it ``SETTLE_WAIT`` seconds at most (a stalled shard must not hold up
    every handshake), and not at all while the shards stay unreachable."""
    layer = server.layer.monitor()
    if layer is None or not layer.state_unchecked():
        return
    task, wait = shared_check(server, layer)
    if wait > 0:
        await asyncio.wait({task}, timeout=wait)


async def check_lost_replies(server: SocketHost, layer: LayerMonitor) -> None:
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


async def watch_layer(server: SocketHost, interval: float = 1.0) -> None:
    """Run until cancelled; a no-op for layers that keep no state outside this process."""
    layer = server.layer.monitor()
    if layer is None:
        return
    while True:
        try:
            # The check settle() shares: two at once would each see the loss, and one could
            # close a socket opened after the other had settled it.
            await asyncio.shield(shared_check(server, layer)[0])
            await check_lost_replies(server, layer)
        except Exception:  # never stop watching; a Redis that refuses a command says why here
            log.exception("watching the channel layer failed")
        await asyncio.sleep(interval)


async def beat(server: SocketHost, layer: LayerMonitor) -> None:
    """One heartbeat; a server told it was swept as dead closes its sockets."""
    try:
        if await layer.server_beat(SERVER_TTL):
            sockets = list(server.sockets)
            log.error(
                "this server was taken for dead (no heartbeat for %gs) and its sockets left "
                "their groups: closing %d websocket(s) with %d so clients reconnect",
                SERVER_TTL,
                len(sockets),
                SERVICE_RESTART,
            )
            await _close_all(server, sockets, SERVICE_RESTART, "channel layer restarted")
    except ChannelLayerError as exc:
        log.error("heartbeat failed: %s", exc)


async def sweep(layer: LayerMonitor) -> None:
    """One sweep after the servers that stopped beating."""
    try:
        await layer.sweep_dead_servers()
    except ChannelLayerError as exc:
        log.error("sweeping after dead protocol servers failed: %s", exc)
    except Exception:  # never stop sweeping
        log.exception("sweeping after dead protocol servers failed")


async def heartbeats(server: SocketHost) -> None:
    """Beat until cancelled (a task of its own: slow shard checks must not delay it). After
    each beat a sweep starts unless the last one is still running: a task of its own, so a
    long sweep does not delay the beats."""
    layer = server.layer.monitor()
    if layer is None:
        return
    sweeping: asyncio.Task[None] | None = None
    try:
        while True:
            try:
                await beat(server, layer)
            except Exception:  # never stop beating
                log.exception("heartbeat failed")
            if sweeping is None or sweeping.done():
                sweeping = asyncio.create_task(sweep(layer))
            await asyncio.sleep(HEARTBEAT)
    finally:
        if sweeping is not None:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
        with contextlib.suppress(Exception):
            await asyncio.shield(layer.forget_server())


@contextlib.asynccontextmanager
async def watching(server: SocketHost, interval: float = 1.0) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(watch_layer(server, interval)),
        asyncio.create_task(heartbeats(server)),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
