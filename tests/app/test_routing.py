"""Routing: URL patterns and their converters, custom-channel routes, and route precedence."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from channelapp.application import App
from channelapp.routing import Route, Router, RoutingError, channel, path
from channelapp.settings import PROTOCOL_CHANNELS


class Index:
    pass


class Chat:
    pass


class Item:
    pass


class Fallback:
    pass


def make_thumbnail(message: object, ctx: object) -> None:
    pass


def resize(message: object, ctx: object) -> None:
    pass


# --- path(): building URL routes -------------------------------------------------------------


def test_path_route_fields() -> None:
    route = path("/items/<int:pk>/", Item, protocol="http")
    assert route.consumer is Item
    assert route.protocol == "http"
    assert route.pattern == "/items/<int:pk>/"
    assert route.channel is None
    assert route.regex is not None
    assert route.regex.pattern == "/items/(?P<pk>[0-9]+)/"
    assert route.converters == {"pk": int}


def test_path_default_protocol_is_any() -> None:
    assert path("/", Index).protocol == "any"


@pytest.mark.parametrize("pattern", ["", "items/", "ws/chat/<room>/", " /x/"])
def test_path_must_start_with_slash(pattern: str) -> None:
    with pytest.raises(RoutingError, match="must start with '/'"):
        path(pattern, Index)


@pytest.mark.parametrize("conv", ["float", "uuid", "bool"])
def test_unknown_converter_is_refused(conv: str) -> None:
    with pytest.raises(RoutingError, match=f"unknown converter '{conv}'"):
        path(f"/x/<{conv}:value>/", Index)


def test_routing_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        path("no-slash", Index)


def test_regex_metacharacters_in_pattern_are_literal() -> None:
    route = path("/a.b/(c)+/<name>/", Index)
    assert route.match("/a.b/(c)+/x/") == {"name": "x"}
    assert route.match("/axb/(c)+/x/") is None
    assert route.match("/a.b/cc/x/") is None


def test_text_that_is_not_a_parameter_stays_literal() -> None:
    # "<Int:pk>" (capital converter) and "<1x>" (name starting with a digit) are not parameters.
    route = path("/a/<Int:pk>/<1x>/", Index)
    assert route.converters == {}
    assert route.match("/a/<Int:pk>/<1x>/") == {}
    assert route.match("/a/5/6/") is None


def test_repeated_parameter_name_is_a_routing_error() -> None:
    with pytest.raises(RoutingError):
        path("/<a>/<a>/", Index)


# --- Route.match(): converters and captured kwargs --------------------------------------------


def test_plain_path_matches_exactly() -> None:
    route = path("/about/", Index)
    assert route.match("/about/") == {}
    assert route.match("/about") is None
    assert route.match("/about/x") is None
    assert route.match("/ABOUT/") is None
    assert route.match("/about//") is None
    assert route.match("x/about/") is None


def test_root_pattern_matches_only_root() -> None:
    route = path("/", Index)
    assert route.match("/") == {}
    assert route.match("") is None
    assert route.match("//") is None


def test_str_converter_is_the_default_and_stops_at_slash() -> None:
    route = path("/ws/chat/<room>/", Chat)
    assert route.converters == {"room": str}
    assert route.match("/ws/chat/lobby/") == {"room": "lobby"}
    assert route.match("/ws/chat/with space.and-dots!/") == {"room": "with space.and-dots!"}
    assert route.match("/ws/chat/a/b/") is None
    assert route.match("/ws/chat//") is None


def test_explicit_str_converter() -> None:
    assert path("/u/<str:name>", Index).match("/u/Ann") == {"name": "Ann"}


def test_int_converter_converts_to_int() -> None:
    route = path("/items/<int:pk>/", Item)
    kwargs = route.match("/items/42/")
    assert kwargs == {"pk": 42}
    assert type(kwargs["pk"]) is int
    assert route.match("/items/007/") == {"pk": 7}


@pytest.mark.parametrize("value", ["-1", "+1", "1.5", "abc", "", " 1", "1_000", "٣"])
def test_int_converter_refuses_non_digits(value: str) -> None:
    assert path("/items/<int:pk>/", Item).match(f"/items/{value}/") is None


def test_int_too_long_for_int_is_no_match_not_an_error() -> None:
    # int() refuses strings over sys.get_int_max_str_digits() (4300) digits with ValueError.
    route = path("/items/<int:pk>/", Item)
    assert route.match("/items/" + "9" * 5000 + "/") is None
    assert route.match("/items/" + "9" * 30 + "/") == {"pk": int("9" * 30)}


def test_slug_converter() -> None:
    route = path("/post/<slug:slug>/", Index)
    assert route.match("/post/Hello_World-2/") == {"slug": "Hello_World-2"}
    assert route.match("/post/hello.world/") is None
    assert route.match("/post/héllo/") is None
    assert route.match("/post/a b/") is None


def test_path_converter_spans_slashes() -> None:
    route = path("/static/<path:rest>", Index)
    assert route.match("/static/css/site/main.css") == {"rest": "css/site/main.css"}
    assert route.match("/static/") is None


def test_several_parameters_are_all_captured() -> None:
    route = path("/org/<slug:org>/repo/<name>/issue/<int:n>/", Index)
    assert route.converters == {"org": str, "name": str, "n": int}
    assert route.match("/org/acme/repo/rocket.py/issue/12/") == {
        "org": "acme",
        "name": "rocket.py",
        "n": 12,
    }
    assert route.match("/org/acme/repo/rocket.py/issue/x/") is None


def test_adjacent_parameters_split_greedily_by_regex() -> None:
    route = path("/<path:head>/<tail>", Index)
    assert route.match("/a/b/c") == {"head": "a/b", "tail": "c"}


def test_channel_route_never_matches_a_path() -> None:
    route = channel("thumbnails.make", make_thumbnail)
    assert route.match("/") is None
    assert route.match("thumbnails.make") is None


# --- channel(): custom-channel routes ---------------------------------------------------------


def test_channel_route_fields() -> None:
    route = channel("thumbnails.make", make_thumbnail)
    assert route == Route(make_thumbnail, "any", "", "thumbnails.make")
    assert route.regex is None
    assert route.converters == {}


@pytest.mark.parametrize("name", ["thumbnails.make", "a", "A-b_c.9", "jobs?single", "x" * 99])
def test_valid_channel_names(name: str) -> None:
    assert channel(name, make_thumbnail).channel == name


@pytest.mark.parametrize(
    "name",
    ["", "has space", "slash/name", "two!!bangs", "a!b?c", "ünïcode", "x" * 100, "tab\tname"],
)
def test_invalid_channel_names_raise_routing_error(name: str) -> None:
    with pytest.raises(RoutingError):
        channel(name, make_thumbnail)


def test_non_string_channel_name_raises_routing_error() -> None:
    with pytest.raises(RoutingError, match="must be str"):
        channel(123, make_thumbnail)  # type: ignore[arg-type]


def test_channel_name_with_trailing_newline_is_refused() -> None:
    with pytest.raises(RoutingError):
        channel("thumbnails.make\n", make_thumbnail)


# --- Router: lookup, protocol filtering and precedence ----------------------------------------


@pytest.fixture
def router() -> Router:
    return Router(
        [
            path("/", Index, protocol="http"),
            path("/ws/chat/<room>/", Chat, protocol="websocket"),
            path("/items/<int:pk>/", Item),
            channel("thumbnails.make", make_thumbnail),
            channel("images.resize", resize),
        ]
    )


def test_for_path_http(router: Router) -> None:
    found = router.for_path("/", "http")
    assert found is not None
    route, kwargs = found
    assert route.consumer is Index
    assert kwargs == {}


def test_for_path_websocket_with_kwargs(router: Router) -> None:
    found = router.for_path("/ws/chat/lobby/", "websocket")
    assert found is not None
    assert found[0].consumer is Chat
    assert found[1] == {"room": "lobby"}


def test_protocol_specific_route_is_not_used_for_the_other_protocol(router: Router) -> None:
    assert router.for_path("/", "websocket") is None
    assert router.for_path("/ws/chat/lobby/", "http") is None


def test_any_protocol_route_serves_both(router: Router) -> None:
    for protocol in ("http", "websocket"):
        found = router.for_path("/items/3/", protocol)  # type: ignore[arg-type]
        assert found is not None
        assert found[0].consumer is Item
        assert found[1] == {"pk": 3}


@pytest.mark.parametrize("url", ["/nope/", "/items/x/", "/ws/chat/", "", "/items/3"])
def test_no_match_gives_none(router: Router, url: str) -> None:
    assert router.for_path(url, "http") is None
    assert router.for_path(url, "websocket") is None


def test_channel_route_names_are_not_paths(router: Router) -> None:
    assert router.for_path("thumbnails.make", "http") is None


def test_for_channel(router: Router) -> None:
    route = router.for_channel("thumbnails.make")
    assert route is not None
    assert route.consumer is make_thumbnail
    resize_route = router.for_channel("images.resize")
    assert resize_route is not None
    assert resize_route.consumer is resize


@pytest.mark.parametrize("name", ["unknown.channel", "thumbnails", "thumbnails.make.x", "/", ""])
def test_for_channel_unknown_gives_none(router: Router, name: str) -> None:
    assert router.for_channel(name) is None


def test_protocol_channels_are_not_custom_routes(router: Router) -> None:
    for name in PROTOCOL_CHANNELS:
        assert router.for_channel(name) is None


def test_custom_channels_in_route_order(router: Router) -> None:
    assert router.custom_channels == ["thumbnails.make", "images.resize"]


def test_router_keeps_all_routes_in_order(router: Router) -> None:
    assert [r.consumer for r in router.routes] == [Index, Chat, Item, make_thumbnail, resize]


def test_first_matching_path_route_wins() -> None:
    router = Router(
        [
            path("/items/<int:pk>/", Item),
            path("/items/<name>/", Fallback),
        ]
    )
    found = router.for_path("/items/5/", "http")
    assert found is not None
    assert (found[0].consumer, found[1]) == (Item, {"pk": 5})
    found = router.for_path("/items/new/", "http")
    assert found is not None
    assert (found[0].consumer, found[1]) == (Fallback, {"name": "new"})


def test_order_decides_between_overlapping_routes() -> None:
    general_first = Router([path("/<path:rest>", Fallback), path("/items/<int:pk>/", Item)])
    found = general_first.for_path("/items/5/", "http")
    assert found is not None
    assert (found[0].consumer, found[1]) == (Fallback, {"rest": "items/5/"})


def test_protocol_filter_applies_before_order() -> None:
    router = Router(
        [
            path("/x/", Chat, protocol="websocket"),
            path("/x/", Index, protocol="http"),
            path("/x/", Fallback),
        ]
    )
    http = router.for_path("/x/", "http")
    ws = router.for_path("/x/", "websocket")
    assert http is not None and http[0].consumer is Index
    assert ws is not None and ws[0].consumer is Chat


def test_failed_conversion_falls_through_to_the_next_route() -> None:
    router = Router([path("/n/<int:n>/", Item), path("/n/<rest>/", Fallback)])
    found = router.for_path("/n/" + "1" * 5000 + "/", "http")
    assert found is not None
    assert found[0].consumer is Fallback


def test_first_channel_route_wins_like_path_routes() -> None:
    router = Router([channel("jobs", make_thumbnail), channel("jobs", resize)])
    route = router.for_channel("jobs")
    assert route is not None
    assert route.consumer is make_thumbnail


def test_duplicate_channel_routes_are_listed_once() -> None:
    router = Router([channel("jobs", make_thumbnail), channel("jobs", resize)])
    assert router.custom_channels == ["jobs"]


def test_empty_router() -> None:
    router = Router([])
    assert router.routes == []
    assert router.custom_channels == []
    assert router.for_path("/", "http") is None
    assert router.for_channel("thumbnails.make") is None


def test_router_copies_the_routes_sequence() -> None:
    routes = [path("/", Index)]
    router = Router(routes)
    routes.append(path("/late/", Fallback))
    assert router.for_path("/late/", "http") is None


def test_app_channels_are_protocol_channels_then_custom_routes() -> None:
    app = App([path("/", Index), channel("b.second", resize), channel("a.first", make_thumbnail)])
    assert app.channels == [*PROTOCOL_CHANNELS, "b.second", "a.first"]


def test_a_route_kind_with_expand_group_is_expanded_once_as_a_group() -> None:
    calls: list[list[Route]] = []

    def expand(routes: Sequence[Route]) -> list[Route]:
        calls.append(list(routes))
        return [
            r if not isinstance(r, _Grouped) else channel("grouped.one", r.consumer) for r in routes
        ]

    class _Grouped(Route):
        pass

    _Grouped.expand_group = expand
    first, second = _Grouped(consumer="a"), _Grouped(consumer="b")
    plain = channel("plain", "c")
    router = Router([first, plain, second])
    assert len(calls) == 1 and calls[0] == [first, plain, second]
    assert router.custom_channels == ["grouped.one", "plain"]
    assert router.for_channel("grouped.one") is router.routes[0]
