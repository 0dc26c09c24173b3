"""Client frames must be masked: the guard in front of aiohttp's frame reader, and the close
codes a close frame may carry."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from aiohttp import WebSocketError
from channelapp.server.frames import MaskedFramesOnly, close_code_allowed_on_the_wire


def frame(payload: bytes, masked: bool = True) -> bytes:
    """A final binary frame carrying ``payload``."""
    head = bytearray([0x82])
    mask = 0x80 if masked else 0
    if len(payload) < 126:
        head.append(mask | len(payload))
    elif len(payload) < 1 << 16:
        head += bytes([mask | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([mask | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Reader:
    def __init__(self) -> None:
        self.fed = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.fed += data
        return False, b""


class Queue:
    def __init__(self) -> None:
        self.exception: BaseException | None = None

    def set_exception(self, exc: BaseException) -> None:
        self.exception = exc


def guard() -> tuple[MaskedFramesOnly, Reader, Queue]:
    reader, queue = Reader(), Queue()
    return MaskedFramesOnly(reader, queue), reader, queue


SIZES = [0, 5, 125, 126, 300, 70_000]  # short, 16-bit and 64-bit lengths


@pytest.mark.parametrize("step", [1, 3, 1000, 1 << 20])
def test_masked_frames_pass_through_however_they_are_split(step: int) -> None:
    stream = b"".join(frame(b"p" * n) for n in SIZES)
    g, reader, queue = guard()
    for i in range(0, len(stream), step):
        assert g.feed_data(stream[i : i + step]) == (False, b"")
    assert bytes(reader.fed) == stream and queue.exception is None


@pytest.mark.parametrize("step", [1, 1 << 20])
def test_an_unmasked_frame_fails_the_stream_with_1002(step: int) -> None:
    stream = frame(b"ok" * 100) + frame(b"bad", masked=False) + frame(b"after")
    g, reader, queue = guard()
    results: list[Any] = [g.feed_data(stream[i : i + step]) for i in range(0, len(stream), step)]
    assert isinstance(queue.exception, WebSocketError)
    assert queue.exception.code == 1002
    assert results[-1] == (False, b"")
    # At most the bad frame's first byte passed (its mask bit is in the second).
    assert len(reader.fed) <= len(frame(b"ok" * 100)) + 1
    assert g.feed_data(frame(b"later")) == (False, b"")
    assert len(reader.fed) <= len(frame(b"ok" * 100)) + 1


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        (1000, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1012, True),
        (1014, True),
        (1015, False),
        (1016, False),
        (2999, False),
        (3000, True),
        (4999, True),
        (5000, False),
        (0, False),
    ],
)
def test_close_codes_a_frame_may_carry(code: int, allowed: bool) -> None:
    assert close_code_allowed_on_the_wire(code) is allowed
