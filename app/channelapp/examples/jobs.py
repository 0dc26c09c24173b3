"""Jobs: background work on a custom channel, the load the autoscaling tests and benchmarks use.

Send ``{"ms": 50, "sent": time.time(), "reply": channel, "n": 1}`` to the ``jobs``
channel: a worker waits ``ms`` milliseconds (I/O-like work that holds a consumer
slot) and, when ``reply`` is set, sends back ``{"n", "waited"}``, where ``waited``
is how long the job queued before a worker started it (by the sender's clock).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channelapp.application import App
from channelapp.consumers.context import Context
from channelapp.routing import channel


async def run_job(message: dict[str, Any], ctx: Context) -> None:
    started = time.time()
    ms = float(message.get("ms", 0))
    if ms > 0:
        await asyncio.sleep(min(ms, 60_000) / 1000)
    reply = message.get("reply")
    if isinstance(reply, str):
        waited = started - float(message.get("sent", started))
        await ctx.send(reply, {"type": "job.done", "n": message.get("n"), "waited": waited})


app = App([channel("jobs", run_job)])
