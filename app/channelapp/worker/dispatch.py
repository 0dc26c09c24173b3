"""Route one message to its consumer and run it.

A consumer is async (run on the worker's event loop) or a plain ``def`` (run in the
worker's thread pool, see :mod:`channelapp.sync`). An object with an async
``consume(ctx)`` method (an ASGI mount, a Channels-1.x-style consumer) takes the
message as it is.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from channelapp.application import App
from channelapp.consumers.body import read_whole_body
from channelapp.consumers.context import Context
from channelapp.consumers.http import Request, Response, send_response
from channelapp.layer import ShardUnavailable
from channelapp.spec import (
    HTTP_REQUEST,
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    TRY_AGAIN_LATER,
    WEBSOCKET_CONNECT,
    WEBSOCKET_DISCONNECT,
)
from channelapp.sync import is_sync_callable, run_sync

log = logging.getLogger("channelapp.worker")


class NoRoute(LookupError):
    pass


def _is_class(consumer: Any) -> bool:
    """A consumer class (instantiated per message) rather than a function; a plain bool, so
    the type checker keeps ``consumer`` as Any instead of narrowing it to ``type[object]``."""
    return inspect.isclass(consumer)


def _takes_message(consumer: Any) -> bool:
    """An object that handles the raw message itself (``async consume(ctx)``)."""
    return not _is_class(consumer) and inspect.iscoroutinefunction(
        getattr(consumer, "consume", None)
    )


async def _call(fn: Any, *args: Any) -> Any:
    if is_sync_callable(fn):
        return await run_sync(fn, *args)
    return await fn(*args)


async def invoke(app: App, ctx: Context) -> str:
    """Run the consumer for ``ctx.message``; returns the outcome label ("ok", "no_route")."""
    channel, message = ctx.channel, ctx.message
    if channel == HTTP_REQUEST:
        found = app.router.for_path(message.get("path", "/"), "http", channel)
        if found is None:
            await read_whole_body(ctx)  # a streamed body is drained, not left to expire
            await send_response(ctx, Response.text("not found\n", 404))
            return "no_route"
        route, ctx.kwargs = found
        consumer: Any = route.consumer
        if _takes_message(consumer):
            await consumer.consume(ctx)
        else:
            body = await read_whole_body(ctx)
            if body is None:
                return "disconnected"  # the client went away before its body was complete
            request = Request({**message, "body": body}, ctx)
            if _is_class(consumer):
                response = await consumer(ctx).handle(request)
            else:
                response = await _call(consumer, request)
            await send_response(ctx, response, request)
    elif channel.startswith("websocket."):
        found = app.router.for_path(message.get("path", "/"), "websocket", channel)
        if found is None:
            if channel == WEBSOCKET_CONNECT:
                await ctx.reply({"type": "websocket.close", "code": NORMAL_CLOSURE})
            log.info("no websocket route for %r", message.get("path"))
            return "no_route"
        route, ctx.kwargs = found
        if _takes_message(route.consumer):
            await route.consumer.consume(ctx)
        else:
            await route.consumer(ctx).dispatch()
    else:
        by_channel = app.router.for_channel(channel)
        if by_channel is None:
            log.warning("no consumer for channel %r; message dropped", channel)
            return "no_route"
        consumer = by_channel.consumer
        if _takes_message(consumer):
            await consumer.consume(ctx)
        elif _is_class(consumer):
            instance = consumer(ctx)
            await _call(instance.handle, message)
        elif is_sync_callable(consumer):
            await run_sync(consumer, message, ctx.sync)
        else:
            await consumer(message, ctx)
    await ctx.save_session()
    return "ok"


async def answer_failure(ctx: Context, exc: BaseException | None = None) -> None:
    """After a consumer raised: HTTP 500, or close the WebSocket with 1011; when it raised
    because a shard of the channel layer is down, HTTP 503 (Retry-After) or close 1013."""
    if not ctx.reply_channel:
        return
    unavailable = isinstance(exc, ShardUnavailable)
    if ctx.channel == HTTP_REQUEST:
        if ctx.response_started:
            await ctx.reply({"type": "http.response.abort"})  # the server cuts the stream
        elif unavailable:
            response = Response.text("channel layer unavailable, try again\n", 503)
            response.headers.append(("Retry-After", "1"))
            await send_response(ctx, response)
        else:
            await send_response(ctx, Response.text("internal server error\n", 500))
    elif ctx.channel.startswith("websocket.") and ctx.channel != WEBSOCKET_DISCONNECT:
        code = TRY_AGAIN_LATER if unavailable else INTERNAL_ERROR
        await ctx.reply({"type": "websocket.close", "code": code})
