"""Channels 1 routing: what matches which message, and the runtime routes a routing becomes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from channelapp.application import App
from channelapp.compat.message import Message
from channelapp.compat.routing import (
    Channels1Routing,
    Router,
    channel_routes,
    connect_consumer,
    default_consumer,
    include,
    null_consumer,
    route,
    route_class,
)
from channelapp.routing import RoutingError, channel, path


def consumer_a(message: Message, **kwargs: Any) -> None:
    pass


def consumer_b(message: Message, **kwargs: Any) -> None:
    pass


def msg(channel_name: str, **content: Any) -> Message:
    return Message(content, channel_name)


def test_filters_are_re_match_on_message_keys_and_named_groups_are_kwargs() -> None:
    r = route("websocket.connect", consumer_a, path=r"^/blog/(?P<slug>[^/]+)/stream/$")
    assert r.match(msg("websocket.connect", path="/blog/news/stream/")) == (
        consumer_a,
        {"slug": "news"},
    )
    assert r.match(msg("websocket.receive", path="/blog/news/stream/")) is None  # channel
    assert r.match(msg("websocket.connect", path="/x/blog/news/stream/")) is None  # re.match
    assert r.match(msg("websocket.connect")) is None  # no such key
    prefix = route("chat.receive", consumer_a, command="join")  # re.match: a prefix is enough
    assert prefix.match(msg("chat.receive", command="joinery")) == (consumer_a, {})
    assert route(["a.b", "c.d"], consumer_a).channel_names() == {"a.b", "c.d"}
    raw = route("http.request", consumer_a, query_string=r"^page=(?P<page>\d+)")
    assert raw.match(msg("http.request", query_string=b"page=3")) == (consumer_a, {"page": "3"})


def test_positional_groups_and_async_consumers_are_refused() -> None:
    with pytest.raises(ValueError, match="positional groups; only named groups"):
        route("websocket.connect", consumer_a, path=r"^/(\d+)/$")

    async def not_channels_1(message: Message) -> None:
        pass

    with pytest.raises(RoutingError, match="is async: Channels 1 consumers are plain functions"):
        route("websocket.connect", not_channels_1)


def test_consumers_and_routings_by_dotted_path() -> None:
    here = __name__
    assert route("a.b", f"{here}.consumer_a").consumer is consumer_a
    with pytest.raises(RoutingError, match=r"Cannot import consumer 'nowhere\.at_all'"):
        route("a.b", "nowhere.at_all")
    inc = include(f"{here}.INCLUDED")
    assert inc.match(msg("a.b")) == (consumer_b, {})
    assert include({"a.b": consumer_a}).match(msg("a.b")) == (consumer_a, {})
    with pytest.raises(RoutingError, match="Cannot import channel routing"):
        include(f"{here}.MISSING")


INCLUDED = [route("a.b", consumer_b)]


def test_include_cuts_its_prefix_and_merges_kwargs() -> None:
    inc = include(
        [
            route("websocket.connect", consumer_a, path=r"^/stream/(?P<room>\w+)/$"),
            route("websocket.connect", consumer_b, path=r"^/stream/$"),
        ],
        path=r"^/chat/(?P<site>\w+)",
    )
    message = msg("websocket.connect", path="/chat/eu/stream/lobby/")
    assert inc.match(message) == (consumer_a, {"site": "eu", "room": "lobby"})
    assert message["path"] == "/chat/eu/stream/lobby/"  # the consumer sees the whole path
    assert inc.match(msg("websocket.connect", path="/chat/eu/stream/")) == (
        consumer_b,
        {"site": "eu"},
    )
    assert inc.match(msg("websocket.connect", path="/other/stream/")) is None


def test_the_first_match_wins_and_nothing_matches_outside_the_routing() -> None:
    router = Router(
        [
            route("chat.receive", consumer_a, command="^join$"),
            route("chat.receive", consumer_b),
            route("websocket.connect", consumer_a, path="^/only/$"),
        ]
    )
    assert router.channels == {"chat.receive", "websocket.connect"}
    assert router.match(msg("chat.receive", command="join")) == (consumer_a, {})
    assert router.match(msg("chat.receive", command="send")) == (consumer_b, {})
    # As in Channels 1: the defaults (accept, drop) are the runtime's, not the Router's.
    assert router.match(msg("websocket.connect", path="/else/")) is None
    assert default_consumer("websocket.connect") == (connect_consumer, {})
    assert default_consumer("websocket.receive") == (null_consumer, {})
    assert router.match(msg("other.channel")) is None
    assert router.match(msg("http.request", path="/")) is None  # Django's views take it


class Klass:
    @classmethod
    def channel_names(cls) -> set[str]:
        return {"websocket.connect", "websocket.receive"}


def test_route_class_takes_the_channels_of_the_class() -> None:
    r = route_class(Klass, path="^/k/$")
    assert r.channel_names() == {"websocket.connect", "websocket.receive"}
    assert r.match(msg("websocket.receive", path="/k/")) == (Klass, {})
    with pytest.raises(ValueError, match="no valid channel_names method"):
        route_class(consumer_a)


def test_a_routing_becomes_runtime_routes_in_place_of_its_entries() -> None:
    before = path("/api/", consumer_a, protocol="http")
    after = path("/late/", consumer_a, protocol="http")
    app = App(
        [
            before,
            route("websocket.connect", consumer_a, path="^/ws/$"),
            after,
            include([route("http.request", consumer_a, path=r"^/poll/")], path="^/long"),
            include([route("jobs.thumbnail", consumer_b)]),
        ]
    )
    routes = app.router.routes
    assert routes[0] is before
    assert [(r.on or r.channel) for r in routes[1:6]] == [
        "http.request",
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
        "jobs.thumbnail",
    ]
    assert routes[6] is after
    assert all(isinstance(r.consumer, Channels1Routing) for r in routes[1:6])
    assert routes[1].consumer is routes[5].consumer  # one routing, matched as a whole
    assert app.channels[-1] == "jobs.thumbnail"
    # HTTP: only the paths the routing may take, the rest go on to the later routes.
    assert app.router.for_path("/long/poll/1", "http", "http.request") == (routes[1], {})
    assert app.router.for_path("/late/", "http", "http.request") == (after, {})
    assert app.router.for_path("/poll/", "http", "http.request") is None
    # WebSockets: every path (Channels 1 accepted sockets on any path).
    assert app.router.for_path("/anywhere/", "websocket", "websocket.receive") == (routes[3], {})
    assert app.router.for_channel("jobs.thumbnail") is routes[5]


def test_a_routing_with_no_http_routes_leaves_http_to_the_others() -> None:
    routes = channel_routes([route("websocket.receive", consumer_a)])
    assert [r.on for r in routes] == [
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
    ]
    assert channel_routes({"websocket.receive": consumer_a})[1].on == "websocket.receive"
    assert channel_routes(f"{__name__}.INCLUDED")[-1].channel == "a.b"


def test_routing_mistakes_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RoutingError, match="invalid channel name 'bad name'"):
        channel_routes([route("bad name", consumer_a)])
    with pytest.raises(RoutingError, match="channelapp routes go in the top-level list"):
        include([channel("a.b", consumer_a)])
    with pytest.raises(RoutingError, match="a Channels 1 routing is a list"):
        channel_routes(42)
    with caplog.at_level(logging.WARNING, "channelapp.compat"):
        routes = channel_routes([route("http.disconnect", consumer_a)])
    assert "sends no 'http.disconnect' messages" in caplog.text
    assert all(r.channel is None for r in routes)
