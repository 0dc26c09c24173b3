"""``channelapp dev``: protocol server and worker in one process over the in-memory layer.

No Redis, no cluster: the whole app in one process for development, the way
``runserver`` worked with Channels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from channelapp.application import App
from channelapp.layer import InMemoryChannelLayer
from channelapp.server.protocol import install_stop_signals, serve_protocol
from channelapp.startup import settings_for
from channelapp.worker.runner import Worker

log = logging.getLogger("channelapp.dev")


async def run_dev_async(app: App, host: str = "127.0.0.1", port: int = 8000) -> None:
    settings = dataclasses.replace(settings_for(app), redis_urls=[])
    layer = InMemoryChannelLayer(
        capacity=settings.channel_capacity,
        expiry=settings.message_expiry,
        group_expiry=settings.group_expiry,
    )
    worker = Worker(app, layer, settings)
    stop = asyncio.Event()
    install_stop_signals(stop)
    worker_task = asyncio.create_task(worker.run())
    log.info("development server (in-memory layer, one process): http://%s:%d/", host, port)
    try:
        await serve_protocol(settings, layer, host, port, stop=stop)
    finally:
        worker.stop()
        await worker_task
        await layer.close()
