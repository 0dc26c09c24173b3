"""Channels 1's Channel, Group and Message outside a worker: name rules, the reply formats'
translation, and the errors a misuse gets."""

from __future__ import annotations

from typing import Any

import pytest
from channelapp.compat import Channel, Group, channel_layers
from channelapp.compat.channel import http_messages, websocket_messages
from channelapp.compat.handler import AsgiHandler
from channelapp.compat.message import Message
from channelapp.compat.sessions import channel_session, enforce_ordering
from channelapp.layer import InvalidChannelName
from channelapp.sync import NotInWorker

# --- WebSocket replies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "pending", "expected"),
    [
        ({"accept": True}, True, [{"type": "websocket.accept"}]),
        ({"accept": False}, True, [{"type": "websocket.close", "code": 1000}]),
        ({"close": True}, True, [{"type": "websocket.close", "code": 1000}]),
        ({"close": 4001}, False, [{"type": "websocket.close", "code": 4001}]),
        # Text before any accept accepts the socket first (the connect consumer's own socket).
        (
            {"text": "hi"},
            True,
            [{"type": "websocket.accept"}, {"type": "websocket.send", "text": "hi"}],
        ),
        ({"text": "hi"}, False, [{"type": "websocket.send", "text": "hi"}]),
        ({"bytes": b"\x00"}, False, [{"type": "websocket.send", "bytes": b"\x00"}]),
        (
            {"accept": True, "text": "hi", "close": True},
            False,
            [
                {"type": "websocket.accept"},
                {"type": "websocket.send", "text": "hi"},
                {"type": "websocket.close", "code": 1000},
            ],
        ),
        (
            {"bytes": b"x", "close": 3001},
            True,
            [
                {"type": "websocket.accept"},
                {"type": "websocket.send", "bytes": b"x"},
                {"type": "websocket.close", "code": 3001},
            ],
        ),
        ({"close": False}, False, []),
        # Runtime messages pass as they are.
        ({"type": "websocket.send", "text": "t"}, True, [{"type": "websocket.send", "text": "t"}]),
    ],
)
def test_websocket_replies(
    content: dict[str, Any], pending: bool, expected: list[dict[str, Any]]
) -> None:
    assert websocket_messages(content, pending) == expected


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ({"text": "a", "bytes": b"b"}, "text or bytes, not both"),
        ({"txt": "typo"}, "got ['txt']"),
        ({"close": "yes"}, "'close' must be True or a close code"),
    ],
)
def test_malformed_websocket_replies_say_what_is_wrong(content: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as err:
        websocket_messages(content)
    assert error in str(err.value)


def test_http_responses_and_chunks() -> None:
    first = {"status": 201, "headers": [(b"X-A", b"1")], "content": b"ab", "more_content": True}
    assert http_messages(first) == [
        {"type": "http.response.start", "status": 201, "headers": [[b"X-A", b"1"]]},
        {"type": "http.response.body", "body": b"ab", "more_body": True},
    ]
    assert http_messages({"content": b"cd"}) == [
        {"type": "http.response.body", "body": b"cd", "more_body": False}
    ]
    assert http_messages({"status": 204}) == [
        {"type": "http.response.start", "status": 204, "headers": []},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    with pytest.raises(ValueError, match="only be sent with the status"):
        http_messages({"headers": [], "content": b""})
    with pytest.raises(ValueError, match=r"got \['body'\]"):
        http_messages({"status": 200, "body": b"asgi 3 key"})


def test_encode_response_chunks_like_channels_1() -> None:
    class FakeResponse(dict[str, str]):  # the parts of HttpResponse encode_response reads
        status_code = 200
        streaming = False
        cookies: dict[str, Any] = {}
        content = b"x" * (AsgiHandler.chunk_size + 10)

    messages = list(AsgiHandler.encode_response(FakeResponse({"Content-Type": "text/plain"})))
    assert [len(m["content"]) for m in messages] == [AsgiHandler.chunk_size, 10]
    assert [m["more_content"] for m in messages] == [True, False]
    assert messages[0]["headers"] == [[b"Content-Type", b"text/plain"]]
    assert "status" not in messages[1]


# --- names and misuse ---------------------------------------------------------------------------


def test_channel_and_group_names_follow_the_runtime_rules() -> None:
    assert Channel(b"chat.receive").name == "chat.receive"
    assert Channel("websocket.send.abc!def").name == "websocket.send.abc!def"
    assert Group("room-12").name == "room-12"
    with pytest.raises(InvalidChannelName, match="only ASCII letters, digits"):
        Channel("chat receive")
    with pytest.raises(InvalidChannelName, match="invalid group name 'room!1'"):
        Group("room!1")
    with pytest.raises(InvalidChannelName, match=r"1\.\.99 characters"):
        Group("g" * 100)
    with pytest.raises(InvalidChannelName, match="group name must be str"):
        Group(12)  # type: ignore[arg-type]


def test_sends_outside_a_worker_say_so() -> None:
    with pytest.raises(NotInWorker, match="no channelapp worker runs in this process"):
        Channel("chat.receive").send({"text": "hi"})
    with pytest.raises(NotInWorker):
        Group("room-1").send({"text": "hi"})
    with pytest.raises(TypeError, match="only send dicts"):
        Channel("chat.receive").send("hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only send dicts"):
        Group("room-1").send(["hi"])  # type: ignore[arg-type]


def test_one_layer_alias() -> None:
    assert "default" in channel_layers
    assert Channel("a.b", alias="default").channel_layer is channel_layers["default"]
    with pytest.raises(KeyError, match="one layer per app"):
        Channel("a.b", alias="other")


def test_message_reads_like_a_dict_and_copies_deeply() -> None:
    message = Message({"reply_channel": "websocket.send.p!x", "text": "hi", "n": [1]}, "x.y")
    assert message["text"] == "hi" and "text" in message and "bytes" not in message
    assert message.get("bytes", b"") == b"" and sorted(message.keys())[0] == "n"
    assert message.channel.name == "x.y"
    assert message.reply_channel == Channel("websocket.send.p!x")
    copy = message.copy()
    copy["n"].append(2)
    assert message["n"] == [1]
    assert Message({}, "x.y").reply_channel is None
    with pytest.raises(RuntimeError, match="does not come from a channelapp worker"):
        channel_session(lambda m: None)(message)


def test_channel_session_needs_a_message_with_a_reply_channel() -> None:
    with pytest.raises(ValueError, match="without Message instance"):
        channel_session(lambda m: None)("not a message")
    with pytest.raises(ValueError, match="can only be used on messages containing it"):
        channel_session(lambda m: None)(Message({}, "x.y"))


def test_enforce_ordering_is_for_websocket_consumers() -> None:
    ordered = enforce_ordering(lambda m: None)
    assert callable(enforce_ordering(slight=True)(lambda m: None))  # Channels 1.0's slight
    with pytest.raises(ValueError, match=r"'chat\.receive', which has no per-socket order"):
        ordered(Message({"reply_channel": "websocket.send.p!x", "order": 1}, "chat.receive"))
    with pytest.raises(ValueError, match="No `order` value"):
        ordered(Message({"reply_channel": "websocket.send.p!x"}, "websocket.receive"))
