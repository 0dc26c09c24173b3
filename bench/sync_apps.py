"""The channelapp side of bench.sync_http: ``/work`` blocks for ``BENCH_WORK_MS`` ms.

``app``: a plain ``def`` consumer (the worker runs it in its thread pool, one thread per
message it runs at once). ``async_app``: the same work as ``await asyncio.sleep`` (the
harness's check while a runtime does not run sync consumers).
"""

from __future__ import annotations

import asyncio
import os
import time

from channelapp.application import App
from channelapp.consumers import Request, Response
from channelapp.routing import path

WORK_SECONDS = float(os.environ.get("BENCH_WORK_MS", "10")) / 1000


def work(request: Request) -> Response:
    time.sleep(WORK_SECONDS)
    return Response.text("ok")


async def async_work(request: Request) -> Response:
    await asyncio.sleep(WORK_SECONDS)
    return Response.text("ok")


app = App([path("/work", work, protocol="http")])
async_app = App([path("/work", async_work, protocol="http")])
