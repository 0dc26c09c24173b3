"""The protocol server's process: listen, serve until told to stop, shut down in stages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web

from channelapp.layer import BaseChannelLayer
from channelapp.server import lost_state, published_settings
from channelapp.server.protocol_server import ProtocolServer
from channelapp.server.shutdown import shutdown
from channelapp.settings import Settings
from channelapp.startup import listen_error, settings_for, split_layer

log = logging.getLogger("channelapp.server")


async def serve_protocol(
    settings: Settings,
    layer: BaseChannelLayer,
    host: str,
    port: int,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    follow_published: bool = False,
) -> None:
    """Serve until ``stop`` is set (or the task is cancelled), then shut down in stages.
    ``follow_published``: apply the protocol settings the app's workers publish, live."""
    server = ProtocolServer(settings, layer)
    # keepalive_timeout closes a connection that sends no complete request head in time, new or
    # idle (aiohttp arms it from connection_made): slow-header clients cannot hold sockets.
    runner = web.AppRunner(
        server.app, handle_signals=False, access_log=None, keepalive_timeout=settings.read_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise listen_error("HTTP", host, port, exc) from None
    log.info("protocol server listening on http://%s:%d", host, port)
    probe = asyncio.create_task(server.layer_probe.run())
    if ready is not None:
        ready.set()
    stop = stop or asyncio.Event()
    try:
        following = published_settings.following(server, settings, enabled=follow_published)
        async with lost_state.watching(server), following:
            await stop.wait()
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        await shutdown(server, site, runner)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_protocol_async(app: Any, host: str, port: int) -> None:
    """Without an app (``None``, as the operator runs it) nothing of one is imported: the
    settings are the environment's, and the app's protocol settings come from its workers.
    With an app (local use) its own settings hold: what workers published is not followed."""
    settings = settings_for(app) if app is not None else published_settings.env_settings()
    layer = split_layer(settings, "protocol server")
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        await serve_protocol(settings, layer, host, port, stop=stop, follow_published=app is None)
    finally:
        await layer.close()
