"""/metrics, /healthz and /readyz for any channelapp process (protocol server, worker, operator).

Kept apart from the metric definitions so that importing it registers no series.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from channelapp.layer import BaseChannelLayer

log = logging.getLogger("channelapp.health")


def _always() -> bool:
    return True


async def metrics_handler(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


class LayerProbe:
    """Asks the layer every ``interval`` seconds whether it can be used; readiness follows it.

    ``problem`` is None while the layer answers, else why not (a shard's error, a
    timeout). A caller that meets the failure first reports it with :meth:`failed`,
    so readiness does not wait for the next probe.
    """

    def __init__(
        self, layer: BaseChannelLayer, interval: float = 1.0, timeout: float = 3.0
    ) -> None:
        self.layer = layer
        self.interval = interval
        self.timeout = timeout
        self.problem: str | None = "channel layer not checked yet"
        self.checked = False

    def _set(self, problem: str | None) -> None:
        if problem != self.problem:
            if problem is None:
                log.info("channel layer available")
            else:
                log.error("channel layer unavailable: %s", problem)
        self.problem = problem

    def failed(self, reason: object) -> None:
        self._set(str(reason))

    async def check(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                problems = await self.layer.unavailable()
        except TimeoutError:
            problems = [f"no answer within {self.timeout:g}s"]
        self._set("; ".join(problems) or None)
        self.checked = True

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)


def add_health_routes(
    app: web.Application,
    ready: Callable[[], bool],
    alive: Callable[[], bool] = _always,
    why_not_ready: Callable[[], str] = lambda: "not ready",
) -> None:
    async def healthz(request: web.Request) -> web.Response:
        if alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="stalled\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {why_not_ready()}\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)


async def serve_metrics(
    host: str, port: int, ready: Callable[[], bool], alive: Callable[[], bool] = _always
) -> web.AppRunner:
    """A small side server (the worker's, the operator's): /metrics, /healthz, /readyz."""
    app = web.Application()
    add_health_routes(app, ready, alive)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
