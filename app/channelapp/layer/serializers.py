"""Message (de)serialization: msgpack, optionally encrypted with Fernet, framed with a header.

The stored item is ``header + body``: the header holds the enqueue time (so the
layer can drop expired messages and report the age of the oldest one without
decoding bodies) and, for process-specific channels that share one Redis list,
the full channel name.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Any

import msgpack
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from channelapp.layer.common import ChannelLayerError, MessageTooLarge

_HEADER = struct.Struct("!dB")
HEADER_SIZE = _HEADER.size
# The largest serialized message a layer takes. Far above what users send: the protocol
# server bounds request bodies and frames (max_body_size, max_frame_size), responses stream
# in chunks, and the Redis layer stores what is larger than 1 MiB out of line.
MAX_MESSAGE_SIZE = 256 << 20


class MessageCorrupt(ChannelLayerError):
    """A stored item could not be decoded (wrong key, foreign data)."""


class Serializer:
    """msgpack bodies, Fernet-encrypted when keys are given (the first key encrypts)."""

    def __init__(
        self,
        encryption_keys: Sequence[str | bytes] | None = None,
        max_size: int = MAX_MESSAGE_SIZE,
    ):
        self.max_size = max_size
        self._fernet: MultiFernet | None = None
        if encryption_keys:
            try:
                self._fernet = MultiFernet([Fernet(k) for k in encryption_keys])
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    "encryption keys must be url-safe base64 32-byte Fernet keys "
                    "(make one with cryptography.fernet.Fernet.generate_key())"
                ) from exc

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    def dumps(self, message: dict[str, Any]) -> bytes:
        if not isinstance(message, dict):
            raise TypeError(f"a message must be a dict, got {type(message).__name__}")
        try:
            body: bytes = msgpack.packb(message, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"message is not msgpack-serializable: {exc}") from None
        if self._fernet is not None:
            body = self._fernet.encrypt(body)
        if len(body) > self.max_size:
            raise MessageTooLarge(f"message is {len(body)} bytes, the limit is {self.max_size}")
        return body

    def loads(self, body: bytes) -> dict[str, Any]:
        if self._fernet is not None:
            try:
                body = self._fernet.decrypt(body)
            except InvalidToken:
                raise MessageCorrupt(
                    "message could not be decrypted with the configured keys"
                ) from None
        try:
            message = msgpack.unpackb(body, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise MessageCorrupt(f"message is not valid msgpack: {exc}") from None
        if not isinstance(message, dict):
            raise MessageCorrupt("stored message is not a dict")
        return message


def frame(body: bytes, channel: str = "", now: float | None = None) -> bytes:
    name = channel.encode("ascii")
    return _HEADER.pack(time.time() if now is None else now, len(name)) + name + body


def unframe(item: bytes) -> tuple[float, str, bytes]:
    """``(enqueued_at, channel name or '', body)``."""
    if len(item) < HEADER_SIZE:
        raise MessageCorrupt("stored item is shorter than its header")
    ts, n = _HEADER.unpack_from(item)
    start = HEADER_SIZE + n
    return ts, item[HEADER_SIZE:start].decode("ascii"), item[start:]


def enqueued_at(item: bytes) -> float:
    ts: float = _HEADER.unpack_from(item)[0]
    return ts
