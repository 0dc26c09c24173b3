"""Channels 1.x routing: ``route``, ``route_class`` and ``include``, matched as Channels 1 did.

A routing is a list of entries, tried in order for every message; the first that
matches wins::

    channel_routing = [
        route("websocket.connect", ws_connect, path=r"^/liveblog/(?P<slug>[^/]+)/stream/$"),
        include("chat.routing.websocket_routing", path=r"^/chat/stream"),
        route("chat.receive", chat_join, command=r"^join$"),
    ]

A route names its channel(s) and filters: regular expressions matched with
``re.match`` against message keys (``path``, or any key of a custom channel's
messages); named groups become the consumer's keyword arguments. ``include``'s
filters are prefixes: the part they matched is cut off the key before the included
routes see it. When nothing matches, Channels 1's defaults apply: a socket's connect
is accepted, its other messages are dropped; an unmatched ``http.request`` goes to
the app's other routes (Django's views, under ``django:SETTINGS``).

:func:`channel_routes` turns such a routing into the runtime's routes: one per
WebSocket channel (every path: Channels 1 accepted sockets on any path), one for
``http.request`` if the routing has HTTP routes (matching the paths they may match),
and one per custom channel. Each runs :class:`Channels1Routing`, which matches the
whole routing against each message and runs the consumer in the worker's thread pool.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from channelapp.compat.channel import Dispatch, reset_dispatch, set_dispatch
from channelapp.compat.exceptions import ChannelSocketException, DenyConnection
from channelapp.compat.message import Message
from channelapp.consumers.body import read_whole_body
from channelapp.consumers.context import Context
from channelapp.consumers.http import Response, send_response
from channelapp.routing import Route as RuntimeRoute
from channelapp.routing import RoutingError, channel
from channelapp.spec import (
    HTTP_REQUEST,
    PROTOCOL_CHANNELS,
    WEBSOCKET_CONNECT,
    WEBSOCKET_DISCONNECT,
    WEBSOCKET_RECEIVE,
)
from channelapp.sync import run_sync

log = logging.getLogger("channelapp.compat")

WEBSOCKET_CHANNELS = (WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT)
_ANY_PATH = re.compile(r".*", re.DOTALL)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else str(value)


def _import(dotted: str, what: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise RoutingError(f"Cannot import {what} {dotted!r}: {exc}") from None


def _compile(filters: dict[str, Any], where: str) -> dict[str, re.Pattern[str]]:
    compiled = {name: re.compile(_text(value)) for name, value in filters.items()}
    for name, regex in compiled.items():
        if regex.groups != len(regex.groupindex):
            raise ValueError(
                f"Filter for {name} on {where} contains positional groups; only named groups "
                "are allowed."
            )
    return compiled


def resolve_routing(routing: Any) -> list[Any]:
    """A routing list from a list, a dotted path to one, or a ``{channel: consumer}`` dict."""
    if isinstance(routing, str):
        routing = _import(routing, "channel routing")
    if isinstance(routing, dict):
        return [Route(name, consumer) for name, consumer in routing.items()]
    if isinstance(routing, list | tuple):
        return list(routing)
    raise RoutingError(
        f"a Channels 1 routing is a list, a dict or a dotted path to one, got {routing!r:.80}"
    )


class _Entry(RuntimeRoute):
    """A Channels 1 routing entry. It is a channelapp Route only so that a Channels 1 routing
    list is a list of routes (``App(channel_routing)``, ``CHANNEL_LAYERS ROUTING``): the
    Router hands all the entries of its list to :func:`expand_routes` together (its
    ``expand_group``, set below) and never matches one itself (``match`` here is Channels
    1's, taking a message)."""

    def __init__(self, consumer: Any = None) -> None:
        super().__init__(consumer, "any", "(Channels 1 routing)")

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def channel_names(self) -> set[str]:
        raise NotImplementedError

    def may_match(self, channel_name: str, path: str) -> bool:
        raise NotImplementedError


class Route(_Entry):
    """A consumer for one or more channels, with optional filters on message keys."""

    def __init__(self, channels: str | Iterable[str], consumer: Any, **kwargs: Any) -> None:
        super().__init__(self._resolve_consumer(consumer))
        names = [channels] if isinstance(channels, str | bytes) else list(channels)
        self.channels = [_text(name) for name in names]
        self.filters = _compile(kwargs, "/".join(self.channels))

    @staticmethod
    def _resolve_consumer(consumer: Any) -> Any:
        if isinstance(consumer, str):
            consumer = _import(consumer, "consumer")
        if inspect.iscoroutinefunction(consumer) or inspect.iscoroutinefunction(
            getattr(consumer, "__call__", None)  # noqa: B004 - a coroutine __call__
        ):
            raise RoutingError(
                f"{consumer!r} is async: Channels 1 consumers are plain functions (for async "
                "consumers use channelapp.routing and channelapp.consumers)"
            )
        return consumer

    def match(self, message: Message) -> tuple[Any, dict[str, Any]] | None:  # type: ignore[override]
        """``(consumer, kwargs)`` when the message is on one of our channels and every filter
        matches its key (``re.match``); else None."""
        if message.channel.name not in self.channels:
            return None
        kwargs: dict[str, Any] = {}
        for name, regex in self.filters.items():
            if name not in message:
                return None
            found = regex.match(_text(message[name]))
            if found is None:
                return None
            kwargs.update(found.groupdict())
        return self.consumer, kwargs

    def channel_names(self) -> set[str]:
        return set(self.channels)

    def may_match(self, channel_name: str, path: str) -> bool:
        """Whether a message on ``channel_name`` for ``path`` could match (keys other than
        ``path`` are not known before the message is read, so they are taken to match)."""
        if channel_name not in self.channels:
            return False
        regex = self.filters.get("path")
        return regex is None or regex.match(path) is not None

    def __str__(self) -> str:
        filters = ", ".join(f"{n}={r.pattern}" for n, r in self.filters.items())
        name = getattr(self.consumer, "__qualname__", repr(self.consumer))
        return f"{'/'.join(self.channels)} {f'({filters}) ' if filters else ''}-> {name}"

    def __repr__(self) -> str:
        return f"<route {self}>"


class RouteClass(Route):
    """A route to a class-based consumer: its channels come from ``channel_names()``."""

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        consumer = Route._resolve_consumer(consumer)
        names = getattr(consumer, "channel_names", None)
        if not callable(names):
            raise ValueError("The consumer passed to RouteClass has no valid channel_names method")
        super().__init__(names(), consumer, **kwargs)


class Include(_Entry):
    """Another routing list, optionally behind prefix filters (``path=r"^/chat"``)."""

    def __init__(self, routing: Any, **kwargs: Any) -> None:
        super().__init__()
        self.routing = _nested(resolve_routing(routing), routing)
        self.prefixes = _compile(kwargs, f"include({routing!r})")

    def __repr__(self) -> str:
        prefixes = ", ".join(f"{n}={r.pattern}" for n, r in self.prefixes.items())
        return f"<include of {len(self.routing)} entries{f' ({prefixes})' if prefixes else ''}>"

    def match(self, message: Message) -> tuple[Any, dict[str, Any]] | None:  # type: ignore[override]
        kwargs: dict[str, Any] = {}
        changed: dict[str, str] = {}
        for name, prefix in self.prefixes.items():
            if name not in message:
                return None
            value = _text(message[name])
            found = prefix.match(value)
            if found is None:
                return None
            kwargs.update(found.groupdict())
            changed[name] = value[found.end() :]
        view = message._with(**changed) if changed else message
        for entry in self.routing:
            got = entry.match(view)
            if got is not None:
                return got[0], {**kwargs, **got[1]}
        return None

    def channel_names(self) -> set[str]:
        names: set[str] = set()
        for entry in self.routing:
            names.update(entry.channel_names())
        return names

    def may_match(self, channel_name: str, path: str) -> bool:
        regex = self.prefixes.get("path")
        if regex is not None:
            found = regex.match(path)
            if found is None:
                return False
            path = path[found.end() :]
        return any(_may_match(entry, channel_name, path) for entry in self.routing)


def _may_match(entry: Any, channel_name: str, path: str) -> bool:
    may = getattr(entry, "may_match", None)
    if callable(may):
        return bool(may(channel_name, path))
    return channel_name in entry.channel_names()  # a routing object of the project's own


def null_consumer(*args: Any, **kwargs: Any) -> None:
    """Takes a message and does nothing (unrouted websocket.receive and disconnect)."""


def connect_consumer(message: Message, *args: Any, **kwargs: Any) -> None:
    """Accepts the socket (the websocket.connect of a path without a connect route)."""
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


route = Route
route_class = RouteClass
include = Include


def default_consumer(channel_name: str) -> tuple[Any, dict[str, Any]] | None:
    """What runs a message no entry matched, as Channels 1's ``check_default`` routes did: a
    socket's connect is accepted, its other messages dropped; anything else has none."""
    if channel_name == WEBSOCKET_CONNECT:
        return connect_consumer, {}
    if channel_name in (WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT):
        return null_consumer, {}
    return None


class Router:
    """A whole routing: the consumer of a message is that of its first matching entry."""

    def __init__(self, routing: Any) -> None:
        self.root = Include(routing)
        self.channels = self.root.channel_names()

    def add_route(self, route: Any) -> None:
        """Adds one entry at the end of the routing (after every entry it has)."""
        self.root.routing.append(route)
        self.channels = self.root.channel_names()

    def match(self, message: Message) -> tuple[Any, dict[str, Any]] | None:
        """``(consumer, kwargs)`` of the first entry matching ``message``; None when none does
        (:func:`default_consumer` has what the runtime does then)."""
        return self.root.match(message)

    def may_match(self, channel_name: str, path: str) -> bool:
        return self.root.may_match(channel_name, path)


# --- running it on the runtime -------------------------------------------------------------------


def _run_consumer(consumer: Callable[..., Any], message: Message, kwargs: dict[str, Any]) -> None:
    """One consumer call, in a worker thread, with Channels 1's exception protocol."""
    try:
        consumer(message, **kwargs)
    except DenyConnection:
        if message.channel.name != WEBSOCKET_CONNECT:
            raise ValueError(
                "You cannot DenyConnection from a non-websocket.connect handler."
            ) from None
        message.reply_channel.send({"close": True})  # type: ignore[union-attr]
    except ChannelSocketException as exc:
        exc.run(message)


class Channels1Routing:
    """The consumer behind every route :func:`channel_routes` makes: matches the Channels 1
    routing against the message and runs the consumer in the worker's thread pool."""

    def __init__(self, routing: Any) -> None:
        self.router = Router(routing)

    async def consume(self, ctx: Context) -> None:
        name, content = ctx.channel, ctx.message
        if name == HTTP_REQUEST:
            body = await read_whole_body(ctx)
            if body is None:
                return  # the client went away before its body was complete
            content = {k: v for k, v in content.items() if k != "body_channel"}
            content.update(body=body, more_body=False)
        message = Message(content, name, ctx=ctx)
        found = self.router.match(message) or default_consumer(name)
        if found is None:
            if name == HTTP_REQUEST:
                log.info(
                    "no Channels 1 route matched %s %s", content.get("method"), content["path"]
                )
                await send_response(ctx, Response.text("not found\n", 404))
            else:
                log.error("Could not find match for message on %s! Check your routing.", name)
            return
        consumer, kwargs = found
        try:
            await self._run(ctx, message, consumer, kwargs)
        finally:
            if name == WEBSOCKET_DISCONNECT and ctx.reply_channel:
                # The socket is gone: its channel session goes too (else it waits out its TTL).
                await ctx.sessions.delete(ctx.reply_channel)
                ctx._session = None

    @staticmethod
    async def _run(ctx: Context, message: Message, consumer: Any, kwargs: dict[str, Any]) -> None:
        if consumer is null_consumer:
            return
        if consumer is connect_consumer:
            await ctx.reply({"type": "websocket.accept"})
            return
        connecting = ctx.reply_channel if ctx.channel == WEBSOCKET_CONNECT else None
        token = set_dispatch(Dispatch(ctx, connecting))
        try:
            await run_sync(_run_consumer, consumer, message, kwargs)
        finally:
            reset_dispatch(token)


class _HttpRoute(RuntimeRoute):
    """``http.request`` for the paths the Channels 1 routing may take; the rest fall through
    to the app's later routes."""

    def match(self, path: str) -> dict[str, Any] | None:
        dispatcher: Channels1Routing = self.consumer
        return {} if dispatcher.router.may_match(HTTP_REQUEST, path) else None


def _generated(entries: list[Any]) -> list[RuntimeRoute]:
    """The runtime routes that run a Channels 1 routing made of ``entries``."""
    dispatcher = Channels1Routing(entries)
    label = "(Channels 1 routing)"
    routes: list[RuntimeRoute] = []
    names = dispatcher.router.channels
    if HTTP_REQUEST in names:
        routes.append(_HttpRoute(dispatcher, "http", label, on=HTTP_REQUEST))
    for name in WEBSOCKET_CHANNELS:
        routes.append(RuntimeRoute(dispatcher, "websocket", label, regex=_ANY_PATH, on=name))
    for name in sorted(names):
        if name in PROTOCOL_CHANNELS:
            continue
        if name.startswith(("http.", "websocket.")):
            log.warning(
                "Channels 1 routing: channelapp's protocol server sends no %r messages; "
                "its routes never run",
                name,
            )
            continue
        routes.append(channel(name, dispatcher))
    return routes


def expand_routes(routes: Sequence[RuntimeRoute]) -> list[RuntimeRoute]:
    """``routes`` with its Channels 1 entries (route, route_class, include) replaced, where the
    first of them stands, by the runtime routes that match them all as one routing (the
    Router calls this; other routes keep their places)."""
    entries = [route for route in routes if isinstance(route, _Entry)]
    if not entries:
        return list(routes)
    out: list[RuntimeRoute] = []
    for route in routes:
        if route is entries[0]:
            out.extend(_generated(entries))
        elif not isinstance(route, _Entry):
            out.append(route)
    return out


_Entry.expand_group = expand_routes


def channel_routes(routing: Any) -> list[RuntimeRoute]:
    """The runtime routes of a Channels 1 routing: a list (of Channels 1 entries, and
    channelapp routes, which keep their places), a ``{channel: consumer}`` dict, or the
    dotted path of either."""
    return expand_routes(resolve_routing(routing))


def is_channels1_entry(entry: Any) -> bool:
    """Whether ``entry`` of a routing list is Channels 1's (a route, route_class, include, or
    a routing object of the project's own), not a channelapp route."""
    return not isinstance(entry, RuntimeRoute) or isinstance(entry, _Entry)


def _nested(entries: list[Any], routing: Any) -> list[Any]:
    for entry in entries:
        if isinstance(entry, RuntimeRoute) and not isinstance(entry, _Entry):
            raise RoutingError(
                f"include({routing!r:.80}) holds a channelapp route ({entry.pattern or entry.channel}): "
                "channelapp routes go in the top-level list, next to the Channels 1 entries"
            )
    return entries
