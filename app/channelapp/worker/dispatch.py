"""Route one message to its consumer and run it."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from channelapp.application import App
from channelapp.consumers.context import Context
from channelapp.consumers.http import Request, Response, send_response
from channelapp.settings import HTTP_REQUEST, WEBSOCKET_CONNECT

log = logging.getLogger("channelapp.worker")


class NoRoute(LookupError):
    pass


def _is_class(consumer: Any) -> bool:
    """A consumer class (instantiated per message) rather than a function; a plain bool, so
    the type checker keeps ``consumer`` as Any instead of narrowing it to ``type[object]``."""
    return inspect.isclass(consumer)


async def invoke(app: App, ctx: Context) -> str:
    """Run the consumer for ``ctx.message``; returns the outcome label ("ok", "no_route")."""
    channel, message = ctx.channel, ctx.message
    if channel == HTTP_REQUEST:
        found = app.router.for_path(message.get("path", "/"), "http")
        if found is None:
            await send_response(ctx, Response.text("not found\n", 404))
            return "no_route"
        route, ctx.kwargs = found
        request = Request(message, ctx)
        consumer: Any = route.consumer
        if _is_class(consumer):
            response = await consumer(ctx).handle(request)
        else:
            response = await consumer(request)
        await send_response(ctx, response, request)
    elif channel.startswith("websocket."):
        found = app.router.for_path(message.get("path", "/"), "websocket")
        if found is None:
            if channel == WEBSOCKET_CONNECT:
                await ctx.reply({"type": "websocket.close", "code": 1000})
            log.info("no websocket route for %r", message.get("path"))
            return "no_route"
        route, ctx.kwargs = found
        await route.consumer(ctx).dispatch()
    else:
        by_channel = app.router.for_channel(channel)
        if by_channel is None:
            log.warning("no consumer for channel %r; message dropped", channel)
            return "no_route"
        consumer = by_channel.consumer
        if _is_class(consumer):
            await consumer(ctx).handle(message)
        else:
            await consumer(message, ctx)
    await ctx.save_session()
    return "ok"


async def answer_failure(ctx: Context) -> None:
    """After a consumer raised: HTTP 500, or close the WebSocket with 1011."""
    if not ctx.reply_channel:
        return
    if ctx.channel == HTTP_REQUEST:
        await send_response(ctx, Response.text("internal server error\n", 500))
    elif ctx.channel.startswith("websocket.") and ctx.channel != "websocket.disconnect":
        await ctx.reply({"type": "websocket.close", "code": 1011})
