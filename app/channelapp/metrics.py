"""Prometheus metrics of this process, and the /metrics, /healthz, /readyz handlers."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Protocol server
HTTP_REQUESTS = Counter("channelapp_http_requests_total", "HTTP requests answered", ["status"])
HTTP_LATENCY = Histogram(
    "channelapp_http_request_seconds",
    "Time from request to the first response message",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBSOCKETS_OPEN = Gauge("channelapp_websockets_open", "WebSocket connections open now")
LAYER_SENDS = Counter(
    "channelapp_layer_sends_total", "Messages sent to the channel layer", ["channel"]
)
LAYER_SEND_FAILURES = Counter(
    "channelapp_layer_send_failures_total", "Sends refused by the layer", ["channel", "reason"]
)
# Worker
MESSAGES_HANDLED = Counter(
    "channelapp_messages_handled_total", "Messages handled by consumers", ["channel", "outcome"]
)
HANDLER_LATENCY = Histogram(
    "channelapp_handler_seconds",
    "Consumer handling time",
    ["channel"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
IN_FLIGHT = Gauge("channelapp_messages_in_flight", "Messages being handled now")


async def metrics_handler(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


def add_health_routes(app: web.Application, ready: Callable[[], bool]) -> None:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)


async def serve_metrics(host: str, port: int, ready: Callable[[], bool]) -> web.AppRunner:
    """A small side server (the worker's): /metrics, /healthz, /readyz."""
    app = web.Application()
    add_health_routes(app, ready)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
