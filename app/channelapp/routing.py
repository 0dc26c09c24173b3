"""Routing: messages to consumers by channel name, and by URL path for HTTP and WebSockets.

routes = [
    path("/", IndexConsumer),                       # HTTP
    path("/ws/chat/<room>/", ChatConsumer),          # WebSocket
    path("/items/<int:pk>/", ItemConsumer, protocol="http"),
    channel("thumbnails.make", make_thumbnail),      # a custom channel
]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from channelapp.consumers.asgi import AsgiMount
from channelapp.layer.names import validate_channel_name

Protocol = Literal["http", "websocket", "any"]

_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "slug": (r"[-a-zA-Z0-9_]+", str),
    "path": (r".+", str),
}
_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)>")


class RoutingError(ValueError):
    """A route is malformed (unknown converter, bad channel name)."""


@dataclass(frozen=True)
class Route:
    consumer: Any
    protocol: Protocol = "any"
    pattern: str = ""
    channel: str | None = None
    regex: re.Pattern[str] | None = None
    converters: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    #: The one channel this URL route answers (e.g. ``websocket.receive``); None: all of them.
    on: str | None = None
    #: A kind of route that stands for others, matched as one group (the routing entries of
    #: :mod:`channelapp.compat.routing`), names here the function that replaces the routes of
    #: its kind in a list by the routes that match them all (others keep their places). The
    #: Router calls each such function once, in the order its kind first appears.
    expand_group: ClassVar[Callable[[Sequence[Route]], list[Route]] | None] = None

    def match(self, path: str) -> dict[str, Any] | None:
        if self.regex is None:
            return None
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        try:
            return {k: self.converters[k](v) for k, v in m.groupdict().items()}
        except ValueError:
            return None


def path(pattern: str, consumer: Any, *, protocol: Protocol = "any") -> Route:
    """A URL route; ``<name>``, ``<int:name>``, ``<slug:name>``, ``<path:name>`` capture kwargs."""
    if not pattern.startswith("/"):
        raise RoutingError(f"URL pattern must start with '/', got {pattern!r}")
    regex, converters, pos = "", {}, 0
    for m in _PARAM.finditer(pattern):
        regex += re.escape(pattern[pos : m.start()])
        conv = m.group("conv") or "str"
        if conv not in _CONVERTERS:
            raise RoutingError(
                f"unknown converter {conv!r} in {pattern!r} (use {', '.join(_CONVERTERS)})"
            )
        part, func = _CONVERTERS[conv]
        if m.group("name") in converters:
            raise RoutingError(f"parameter <{m.group('name')}> appears twice in {pattern!r}")
        regex += f"(?P<{m.group('name')}>{part})"
        converters[m.group("name")] = func
        pos = m.end()
    regex += re.escape(pattern[pos:])
    return Route(consumer, protocol, pattern, None, re.compile(regex), converters)


def mount(prefix: str, application: Any) -> Route:
    """An ASGI 3 HTTP application (Django's ``get_asgi_application()``, Starlette, FastAPI)
    served by the workers for every path under ``prefix``; its ``root_path`` is the prefix."""
    if not prefix.startswith("/"):
        raise RoutingError(f"mount prefix must start with '/', got {prefix!r}")
    root = prefix.rstrip("/")
    regex = re.compile(re.escape(root) + r"(?:/.*)?" if root else r"/.*")
    return Route(AsgiMount(application, root), "http", prefix, None, regex)


def channel(name: str, consumer: Any) -> Route:
    """A route for messages sent to a custom channel."""
    try:
        validate_channel_name(name)
    except ValueError as exc:
        raise RoutingError(str(exc)) from None
    return Route(consumer, "any", "", name)


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        expanders: list[Callable[[Sequence[Route]], list[Route]]] = []
        for route in self.routes:
            expand = type(route).expand_group
            if expand is not None and expand not in expanders:
                expanders.append(expand)
        for expand in expanders:
            self.routes = expand(self.routes)
        self._channels: dict[str, Route] = {}
        for route in self.routes:  # the first route for a channel wins, as for paths
            if route.channel:
                self._channels.setdefault(route.channel, route)

    @property
    def custom_channels(self) -> list[str]:
        return list(self._channels)

    def for_channel(self, name: str) -> Route | None:
        return self._channels.get(name)

    def for_path(
        self, url_path: str, protocol: Protocol, channel: str | None = None
    ) -> tuple[Route, dict[str, Any]] | None:
        """The first URL route for ``url_path``; routes bound to one channel (``on``) match
        only messages of that channel."""
        for route in self.routes:
            if route.channel or route.protocol not in ("any", protocol):
                continue
            if route.on is not None and route.on != channel:
                continue
            kwargs = route.match(url_path)
            if kwargs is not None:
                return route, kwargs
        return None
