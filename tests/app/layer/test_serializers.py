"""Stored messages: msgpack bodies, Fernet encryption with key rotation, and the item header."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from channelapp.layer import MessageTooLarge
from channelapp.layer.names import MAX_NAME_LENGTH
from channelapp.layer.serializers import (
    HEADER_SIZE,
    MessageCorrupt,
    Serializer,
    enqueued_at,
    frame,
    unframe,
)
from cryptography.fernet import Fernet

KEY_A = Fernet.generate_key()
KEY_B = Fernet.generate_key()

MESSAGES: list[dict[str, Any]] = [
    {},
    {"type": "http.request", "path": "/a", "body": b"\x00\xff" * 100, "more_body": False},
    {"type": "websocket.receive", "text": "h\u00e9llo \U0001f600", "order": 7},
    {"headers": [[b"host", b"x"]], "nested": {"n": [1, 2.5, None, True]}, "big": 2**63 - 1},
]


@pytest.mark.parametrize("keys", [None, [KEY_A], [KEY_A.decode(), KEY_B]])
@pytest.mark.parametrize("message", MESSAGES)
def test_round_trip(keys: list[str | bytes] | None, message: dict[str, Any]) -> None:
    s = Serializer(keys)
    stored = s.dumps(message)
    assert s.loads(stored) == message
    assert s.encrypted is (keys is not None)


def test_encrypted_bodies_hide_the_message() -> None:
    message = {"type": "websocket.receive", "text": "secret-text-7f3a"}
    plain = Serializer().dumps(message)
    sealed = Serializer([KEY_A]).dumps(message)
    assert b"secret-text-7f3a" in plain
    assert b"secret-text-7f3a" not in sealed
    assert b"secret-text-7f3a" not in base64.urlsafe_b64decode(sealed)
    assert Serializer([KEY_A]).dumps(message) != sealed  # a fresh IV every time


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ([KEY_A], [KEY_B]),  # wrong key
        ([KEY_A], None),  # encrypted, read as plain msgpack
        (None, [KEY_A]),  # plain, read with a key: never taken as authentic
    ],
)
def test_foreign_items_are_refused(writer: list[bytes] | None, reader: list[bytes] | None) -> None:
    stored = Serializer(writer).dumps({"type": "x", "text": "t"})
    with pytest.raises(MessageCorrupt):
        Serializer(reader).loads(stored)


@pytest.mark.parametrize("position", [0, 10, 40, -5, -1])
def test_tampered_ciphertext_is_refused(position: int) -> None:
    s = Serializer([KEY_A])
    raw = bytearray(base64.urlsafe_b64decode(s.dumps({"type": "x", "text": "pay 10"})))
    raw[position] ^= 0x01
    with pytest.raises(MessageCorrupt, match="could not be decrypted"):
        s.loads(base64.urlsafe_b64encode(bytes(raw)))


def test_truncated_ciphertext_is_refused() -> None:
    s = Serializer([KEY_A])
    stored = s.dumps({"type": "x"})
    with pytest.raises(MessageCorrupt):
        s.loads(stored[:-4])


def test_key_rotation() -> None:
    """New key first, old key second: old items still read, new items use the new key."""
    old = Serializer([KEY_A]).dumps({"n": 1})
    rotated = Serializer([KEY_B, KEY_A])
    assert rotated.loads(old) == {"n": 1}
    new = rotated.dumps({"n": 2})
    assert Serializer([KEY_B]).loads(new) == {"n": 2}
    with pytest.raises(MessageCorrupt):
        Serializer([KEY_A]).loads(new)
    # Once the old key is dropped, items under it are refused.
    with pytest.raises(MessageCorrupt):
        Serializer([KEY_B]).loads(old)


@pytest.mark.parametrize(
    "keys",
    [["short"], [b"x" * 44], ["not base64 at all, not base64 at all, not!!"], [b""], [123]],
)
def test_bad_keys_are_refused_at_construction(keys: list[Any]) -> None:
    with pytest.raises(ValueError, match="Fernet keys"):
        Serializer(keys)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ([1, 2], TypeError),
        ("text", TypeError),
        ({"x": object()}, TypeError),
        ({"x": {1, 2}}, TypeError),
        ({"x": 2**64}, TypeError),
    ],
)
def test_what_cannot_be_stored(message: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        Serializer().dumps(message)


@pytest.mark.parametrize(
    "stored",
    [
        b"",  # nothing
        b"\xc1",  # a byte msgpack never uses
        b"\x93\x01\x02\x03",  # a list, not a dict
        b"\xa3abc",  # a string
        b"\x81\xa1a",  # a map cut short
    ],
)
def test_bad_plain_bodies_are_refused(stored: bytes) -> None:
    with pytest.raises(MessageCorrupt):
        Serializer().loads(stored)


@pytest.mark.parametrize("keys", [None, [KEY_A]])
def test_size_limit(keys: list[bytes] | None) -> None:
    s = Serializer(keys, max_size=1000)
    assert s.loads(s.dumps({"b": b"x" * 500})) == {"b": b"x" * 500}
    with pytest.raises(MessageTooLarge, match="limit is 1000"):
        s.dumps({"b": b"x" * 1000})


@pytest.mark.parametrize(
    "channel", ["", "http.response!abc", "p!" + "x" * (MAX_NAME_LENGTH - 3)]
)  # the longest name
def test_frame_round_trip(channel: str) -> None:
    item = frame(b"body\x00bytes", channel, now=1234.5)
    assert unframe(item) == (1234.5, channel, b"body\x00bytes")
    assert enqueued_at(item) == 1234.5
    assert len(item) == HEADER_SIZE + len(channel) + len(b"body\x00bytes")


def test_frame_stamps_the_current_time() -> None:
    before = time.time()
    stamped = enqueued_at(frame(b"", ""))
    assert before <= stamped <= time.time()


@pytest.mark.parametrize("item", [b"", b"\x00" * (HEADER_SIZE - 1)])
def test_short_items_are_refused(item: bytes) -> None:
    with pytest.raises(MessageCorrupt, match="shorter than its header"):
        unframe(item)


def test_channel_names_in_a_frame_are_ascii() -> None:
    with pytest.raises(UnicodeEncodeError):
        frame(b"", "caf\u00e9")
