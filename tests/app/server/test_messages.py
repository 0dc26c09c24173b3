"""Requests as channel messages, and the checks every reply from a worker passes."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from channelapp.server.messages import (
    BadReply,
    check_headers,
    check_response_body,
    check_response_start,
    check_websocket_reply,
    scope,
)

START = "http.response.start"
BODY = "http.response.body"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"type": START, "status": 200}, (200, [])),
        ({"type": START, "status": 599, "headers": []}, (599, [])),
        ({"type": START, "status": 100, "headers": [(b"a", b"1")]}, (100, [("a", "1")])),
        (
            {"type": START, "status": 302, "headers": [["Location", "/x"], [b"x-b", "\xe9"]]},
            (302, [("Location", "/x"), ("x-b", "\xe9")]),
        ),
    ],
)
def test_good_response_starts(reply: dict[str, Any], expected: Any) -> None:
    assert check_response_start(reply) == expected


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (None, "got 'NoneType'"),
        ("http.response.start", "got 'str'"),
        ({"type": BODY, "body": b""}, "got 'http.response.body'"),
        ({"status": 200}, "got None"),
        ({"type": START}, "status must be an int"),
        ({"type": START, "status": "200"}, "status must be an int"),
        ({"type": START, "status": 99}, "in 100..599"),
        ({"type": START, "status": 600}, "in 100..599"),
        ({"type": START, "status": 200, "headers": {"a": "b"}}, "list of [name, value] pairs"),
        ({"type": START, "status": 200, "headers": [["a", "b", "c"]]}, "[name, value] pair"),
        ({"type": START, "status": 200, "headers": ["ab"]}, "[name, value] pair"),
        ({"type": START, "status": 200, "headers": [[1, "b"]]}, "bytes or str"),
        ({"type": START, "status": 200, "headers": [["a", None]]}, "bytes or str"),
        ({"type": START, "status": 200, "headers": [["a", "b\r\nc: d"]]}, "line break"),
        ({"type": START, "status": 200, "headers": [[b"a\n", b"b"]]}, "line break"),
    ],
)
def test_bad_response_starts(reply: Any, says: str) -> None:
    with pytest.raises(BadReply, match=says.replace("[", r"\[").replace("]", r"\]")):
        check_response_start(reply)


def test_no_headers_are_an_empty_list() -> None:
    assert check_headers(None) == [] and check_headers(()) == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"type": BODY}, (b"", False)),
        ({"type": BODY, "body": b"x"}, (b"x", False)),
        ({"type": BODY, "body": "é"}, ("é".encode(), False)),
        ({"type": BODY, "body": b"", "more_body": True}, (b"", True)),
        ({"type": BODY, "body": b"x", "more_body": 0}, (b"x", False)),
    ],
)
def test_good_response_bodies(reply: dict[str, Any], expected: tuple[bytes, bool]) -> None:
    assert check_response_body(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        None,
        [BODY],
        {"type": START, "status": 200},
        {"type": BODY, "body": 1},
        {"type": BODY, "body": bytearray(b"x")},
        {"type": BODY, "body": None},
    ],
)
def test_bad_response_bodies(reply: Any) -> None:
    with pytest.raises(BadReply):
        check_response_body(reply)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ({"type": "websocket.accept"}, "websocket.accept"),
        ({"type": "websocket.accept", "subprotocol": "chat"}, "websocket.accept"),
        ({"type": "websocket.send", "text": "hi"}, "websocket.send"),
        ({"type": "websocket.send", "text": "", "bytes": None}, "websocket.send"),
        ({"type": "websocket.send", "bytes": b"\x00"}, "websocket.send"),
        ({"type": "websocket.close"}, "websocket.close"),
        ({"type": "websocket.close", "code": 1000}, "websocket.close"),
        ({"type": "websocket.close", "code": 1012}, "websocket.close"),
        ({"type": "websocket.close", "code": 3000}, "websocket.close"),
        ({"type": "websocket.close", "code": 4999}, "websocket.close"),
    ],
)
def test_good_websocket_replies(reply: dict[str, Any], kind: str) -> None:
    assert check_websocket_reply(reply) == kind


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (None, "expected one of"),
        ({"type": "http.response.start"}, "expected one of"),
        ({"text": "hi"}, "expected one of"),
        ({"type": "websocket.send"}, "exactly one of"),
        ({"type": "websocket.send", "text": "a", "bytes": b"b"}, "exactly one of"),
        ({"type": "websocket.send", "text": b"a"}, "'text' must be str"),
        ({"type": "websocket.send", "bytes": "b"}, "'bytes' must be bytes"),
        ({"type": "websocket.close", "code": 999}, "not a valid close code"),
        ({"type": "websocket.close", "code": 1015}, "not a valid close code"),
        ({"type": "websocket.close", "code": 2999}, "not a valid close code"),
        ({"type": "websocket.close", "code": 5000}, "not a valid close code"),
        ({"type": "websocket.close", "code": "1000"}, "not a valid close code"),
    ],
)
def test_bad_websocket_replies(reply: Any, says: str) -> None:
    with pytest.raises(BadReply, match=says):
        check_websocket_reply(reply)


def test_scope_keeps_the_raw_path_and_lowercases_header_names() -> None:
    request = make_mocked_request("GET", "/a%2Fb/?x=1&y", headers={"Host": "h", "X-Thing": "V"})
    got = scope(request, "http.response.p!1")
    assert got["reply_channel"] == "http.response.p!1"
    assert (got["path"], got["raw_path"], got["query_string"]) == ("/a/b/", b"/a%2Fb/", b"x=1&y")
    assert got["headers"] == [[b"host", b"h"], [b"x-thing", b"V"]]
    assert (got["http_version"], got["scheme"], got["root_path"]) == ("1.1", "http", "")
