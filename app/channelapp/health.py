"""/metrics, /healthz and /readyz for any channelapp process (protocol server, worker, operator).

Kept apart from the metric definitions so that importing it registers no series.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def _always() -> bool:
    return True


async def metrics_handler(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


def add_health_routes(
    app: web.Application, ready: Callable[[], bool], alive: Callable[[], bool] = _always
) -> None:
    async def healthz(request: web.Request) -> web.Response:
        if alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="stalled\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

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
