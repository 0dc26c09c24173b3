"""``channelapp.compat.test``: Channels 1's ``channels.test`` so a ported project keeps its tests.

The Django tests (a Channels 1 project's own, the ported examples', and tests that must fail
the way Channels 1's test client failed them) run in ``django-admin test`` processes: the
test process never configures Django. The routing pieces the test API leans on
(``Router.match``, ``Router.add_route``, ``apply_routes``) are checked here directly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unittest
from pathlib import Path
from typing import Any

import pytest
from channelapp.compat.message import Message
from channelapp.compat.routing import (
    Router,
    connect_consumer,
    default_consumer,
    include,
    null_consumer,
    route,
)
from channelapp.compat.test import Client, apply_routes

ROOT = Path(__file__).resolve().parents[3]
PROJECT = "tests.app.compat.channels1project"
RESULT = re.compile(r"^(test_\w+) \([\w.]+\) \.\.\. (ok|FAIL|ERROR)$", re.MULTILINE)


def django_tests(
    settings: str, label: str, tmp_path: Path, *path: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """``django-admin test label`` under ``settings``; the process and each test's outcome."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        PYTHONPATH=os.pathsep.join(str(p) for p in (ROOT, *path)),
        # The main databases (never written by the tests, which get in-memory ones).
        CHANNELS1PROJECT_DB=str(tmp_path / "project.sqlite3"),
        LIVEBLOG_DB=str(tmp_path / "liveblog.sqlite3"),
        MULTICHAT_DB=str(tmp_path / "multichat.sqlite3"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "django", "test", label, "-v", "2", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return proc, dict(RESULT.findall(proc.stderr))


def test_a_channels_1_projects_own_tests_pass(tmp_path: Path) -> None:
    """tests/app/compat/channels1project/tests.py: Channels 1 test code (ChannelTestCase,
    Client, WSClient, HttpClient, apply_routes) over the project's consumers and routing."""
    proc, results = django_tests(f"{PROJECT}.settings", f"{PROJECT}.tests", tmp_path)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert results == {
        "test_the_logged_in_user_reaches_the_sockets_later_messages": "ok",
        "test_a_failed_login_leaves_the_socket_anonymous": "ok",
        "test_force_login_and_a_generic_consumer": "ok",
        "test_an_http_consumer_answers_with_a_django_response": "ok",
        "test_the_session_cookie_goes_with_the_first_message_only": "ok",
        "test_a_message_no_route_takes_fails_consume": "ok",
        "test_a_message_reaches_everyone_in_the_room": "ok",
        "test_the_channel_session_lives_as_long_as_the_socket": "ok",
        "test_a_socket_that_disconnects_leaves_the_room": "ok",
        "test_leaving_closes_the_socket_with_a_code": "ok",
        "test_a_closed_room_denies_the_connection": "ok",
        "test_group_sends_read_back_in_channels_1s_shape": "ok",
        "test_a_job_on_a_channel_of_its_own": "ok",
        "test_the_routes_apply_inside_the_block_only": "ok",
        "test_a_single_route_on_a_test_method": "ok",
        "test_the_query_string_goes_with_the_connect_only": "ok",
        "test_an_ordered_client_numbers_its_messages": "ok",
    }
    assert "Ran 17 tests" in proc.stderr


@pytest.mark.parametrize(
    ("example", "tests"),
    [
        (
            "liveblog",
            {
                "test_a_saved_post_reaches_the_blogs_sockets",
                "test_a_post_written_over_the_socket_is_saved_and_sent",
                "test_an_unknown_blog_gets_an_error_and_a_close",
            },
        ),
        (
            "multichat",
            {
                "test_join_then_send_reaches_the_room",
                "test_the_rooms_rules_are_replies_to_the_client",
                "test_leaving_stops_the_rooms_messages",
            },
        ),
    ],
)
def test_the_ported_examples_tests_pass(example: str, tests: set[str], tmp_path: Path) -> None:
    """Tests of examples/channels1/<example> written with the Channels 1 test API, on the
    example's own settings and routing (CHANNEL_LAYERS ROUTING)."""
    project = ROOT / "examples" / "channels1" / example
    label = f"tests.app.compat.channels1examples.{example}_tests"
    proc, results = django_tests(f"{example}.settings", label, tmp_path, project)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert results == dict.fromkeys(tests, "ok")


def test_what_channels_1s_test_client_failed_on_fails_the_test(tmp_path: Path) -> None:
    proc, results = django_tests(f"{PROJECT}.settings", f"{PROJECT}.failing_tests", tmp_path)
    assert proc.returncode == 1, proc.stderr[-6000:]
    assert results == {
        "test_1_leaves_a_message_behind": "ok",
        "test_2_sees_the_message_of_test_1": "FAIL",  # each test has a layer of its own
        "test_3_a_connect_nobody_accepts": "FAIL",
        "test_4_a_message_that_never_came": "FAIL",
        "test_5_a_reply_channelapp_would_refuse": "ERROR",
    }
    assert "AssertionError: Connection rejected: None != {'accept': True}" in proc.stderr
    assert "AssertionError: Expected a message on channel never.sent, got none" in proc.stderr
    assert "ValueError: a WebSocket reply carries text or bytes, not both" in proc.stderr
    assert "FAILED (failures=3, errors=1)" in proc.stderr


# --- Router.match, Router.add_route, apply_routes (no Django needed) ------------------------------


def consumer_a(message: Message, **kwargs: Any) -> None:
    pass


def consumer_b(message: Message, **kwargs: Any) -> None:
    pass


def msg(channel_name: str, **content: Any) -> Message:
    return Message(content, channel_name)


def test_router_match_is_none_when_no_entry_matches_as_in_channels_1() -> None:
    router = Router([route("websocket.connect", consumer_a, path="^/only/$")])
    assert router.match(msg("websocket.connect", path="/only/")) == (consumer_a, {})
    for name in ("websocket.connect", "websocket.receive", "websocket.disconnect"):
        assert router.match(msg(name, path="/else/")) is None
    assert router.match(msg("http.request", path="/")) is None
    assert Router([]).match(msg("websocket.connect", path="/")) is None
    # What the runtime runs for those instead: Channels 1's check_default consumers.
    assert default_consumer("websocket.connect") == (connect_consumer, {})
    assert default_consumer("websocket.receive") == (null_consumer, {})
    assert default_consumer("websocket.disconnect") == (null_consumer, {})
    assert default_consumer("http.request") is None
    assert default_consumer("chat.receive") is None


def test_router_add_route_appends_after_every_entry() -> None:
    routing = [route("chat.receive", consumer_a, command="^join$")]
    router = Router(routing)
    assert router.channels == {"chat.receive"}
    router.add_route(route("chat.receive", consumer_b))
    router.add_route(route("websocket.connect", consumer_b))
    assert router.match(msg("chat.receive", command="join")) == (consumer_a, {})  # first wins
    assert router.match(msg("chat.receive", command="send")) == (consumer_b, {})
    assert router.match(msg("websocket.connect", path="/")) == (consumer_b, {})
    assert router.channels == {"chat.receive", "websocket.connect"}
    assert len(routing) == 1  # the project's list is left as it was
    router.add_route(include([route("thumbnails.make", consumer_a)]))
    assert router.match(msg("thumbnails.make")) == (consumer_a, {})
    assert "thumbnails.make" in router.channels


def consumer_of(channel_name: str) -> Any:
    return Client().get_consumer_by_channel(channel_name)


def test_apply_routes_takes_a_route_a_list_or_a_list_of_routings_and_restores() -> None:
    with apply_routes([route("a.b", consumer_a)]):
        assert consumer_of("a.b") is consumer_a
        with apply_routes(route("a.b", consumer_b)):
            assert consumer_of("a.b") is consumer_b
        assert consumer_of("a.b") is consumer_a
        with apply_routes([[route("c.d", consumer_b)], [route("a.b", consumer_b)]]):
            assert consumer_of("c.d") is consumer_b
            assert consumer_of("a.b") is consumer_b
        with apply_routes([]):
            assert consumer_of("a.b") is None
        assert consumer_of("a.b") is consumer_a


def test_apply_routes_decorates_a_function_and_restores_after_an_error() -> None:
    seen = []

    @apply_routes([route("a.b", consumer_b)])
    def check(arg: int) -> int:
        seen.append(consumer_of("a.b"))
        if arg < 0:
            raise ValueError("boom")
        return arg * 2

    with apply_routes([route("a.b", consumer_a)]):
        assert check(2) == 4
        with pytest.raises(ValueError, match="boom"):
            check(-1)
        assert consumer_of("a.b") is consumer_a
    assert seen == [consumer_b, consumer_b]


def test_apply_routes_decorates_a_test_class_from_set_up_to_tear_down() -> None:
    seen: list[tuple[str, Any]] = []

    @apply_routes([route("a.b", consumer_b)])
    class Tests(unittest.TestCase):
        def setUp(self) -> None:
            seen.append(("setUp", consumer_of("a.b")))

        def tearDown(self) -> None:
            seen.append(("tearDown", consumer_of("a.b")))

        def test_one(self) -> None:
            seen.append(("test", consumer_of("a.b")))

    @apply_routes([route("a.b", consumer_b)])
    class Failing(unittest.TestCase):
        def setUp(self) -> None:
            raise RuntimeError("setUp fails")

        def test_never(self) -> None:
            raise AssertionError("not run")

    with apply_routes([route("a.b", consumer_a)]):
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Tests).run(result)
        assert result.wasSuccessful(), result.errors + result.failures
        assert consumer_of("a.b") is consumer_a
        failed = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Failing).run(failed)
        assert len(failed.errors) == 1 and "setUp fails" in failed.errors[0][1]
        assert consumer_of("a.b") is consumer_a  # the failed setUp left no routes behind
    assert seen == [("setUp", consumer_b), ("test", consumer_b), ("tearDown", consumer_b)]
