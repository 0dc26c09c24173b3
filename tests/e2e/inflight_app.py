"""An app whose requests leave a trace: ``/slow/<n>/?ms=`` appends ``start n <pid>`` to the
file ``INFLIGHT_LOG`` names, works ``ms`` milliseconds, then appends ``finish n <pid>``."""

from __future__ import annotations

import asyncio
import os

from channelapp.application import App
from channelapp.consumers import HttpConsumer, Request, Response
from channelapp.routing import path


def record(event: str, n: int) -> None:
    # One short write with O_APPEND: lines of concurrent writers never interleave.
    fd = os.open(os.environ["INFLIGHT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {n} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


class Slow(HttpConsumer):
    async def get(self, request: Request) -> Response:
        n = request.kwargs["n"]
        record("start", n)
        await asyncio.sleep(float(request.query.get("ms", ["0"])[0]) / 1000)
        record("finish", n)
        return Response.json({"n": n})


app = App([path("/slow/<int:n>/", Slow, protocol="http")])
