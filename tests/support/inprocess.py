"""A protocol server and a worker in the test's own event loop (``channelapp dev`` for tests).

Over the in-memory layer by default, or over real redis-servers when ``redis_urls`` is
given; on a free port; stopped (worker drained, server closed) on exit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from channelapp.application import App
from channelapp.layer import BaseChannelLayer, InMemoryChannelLayer, layer_from_settings
from channelapp.server.protocol import serve_protocol
from channelapp.worker.runner import Worker

from devtools.procs import free_port


@dataclass
class Served:
    url: str
    worker: Worker
    layer: BaseChannelLayer


@asynccontextmanager
async def serving(
    app: App,
    *,
    redis_urls: list[str] | None = None,
    concurrency: int | None = None,
    **settings: Any,
) -> AsyncIterator[Served]:
    config = dataclasses.replace(
        app.settings, redis_urls=list(redis_urls or []), allowed_origins=["*"], **settings
    )
    layer: BaseChannelLayer = (
        layer_from_settings(config)
        if redis_urls
        else InMemoryChannelLayer(capacity=config.channel_capacity, expiry=config.message_expiry)
    )
    worker = Worker(app, layer, config, concurrency=concurrency)
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    worker_task = asyncio.create_task(worker.run())
    server_task = asyncio.create_task(
        serve_protocol(config, layer, "127.0.0.1", port, ready=ready, stop=stop)
    )
    try:
        async with asyncio.timeout(15):
            await ready.wait()
            while not worker.ready:
                if worker_task.done():
                    worker_task.result()  # raises what stopped the worker
                await asyncio.sleep(0.01)
        yield Served(f"http://127.0.0.1:{port}", worker, layer)
    finally:
        stop.set()
        worker.stop()
        await asyncio.gather(server_task, worker_task, return_exceptions=True)
        await layer.close()
