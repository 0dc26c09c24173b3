"""``channelapp worker``: a worker process with its metrics side server and signal handling."""

from __future__ import annotations

import asyncio
import logging
import signal

from channelapp.application import App
from channelapp.health import serve_metrics
from channelapp.startup import listen_error, settings_for, split_layer
from channelapp.worker.runner import Worker

log = logging.getLogger("channelapp.worker")


async def run_worker_async(
    app: App,
    *,
    metrics_host: str = "0.0.0.0",
    metrics_port: int = 0,
    concurrency: int | None = None,
) -> None:
    settings = settings_for(app)
    layer = split_layer(settings, "worker")
    worker = Worker(app, layer, settings, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    side = None
    if metrics_port:
        try:
            side = await serve_metrics(metrics_host, metrics_port, lambda: worker.ready)
        except OSError as exc:
            await layer.close()
            raise listen_error("metrics", metrics_host, metrics_port, exc) from None
        log.info("worker metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    try:
        await worker.run()
    finally:
        await layer.close()
        if side is not None:
            await side.cleanup()
