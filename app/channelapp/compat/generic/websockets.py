"""Channels 1.x's ``WebsocketConsumer`` and ``JsonWebsocketConsumer``.

One difference in the order of things: the ``groups`` (``connection_groups()``) are
joined after ``connect()`` has run (unless it rejected or closed the socket), not
before. A socket that is still in its handshake must get its accept before any other
message, and a group message arriving first would refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

from channelapp.compat.auth import (
    channel_and_http_session_user_from_http,
    channel_session_user_from_http,
)
from channelapp.compat.channel import Group, current_dispatch
from channelapp.compat.generic.base import BaseConsumer
from channelapp.compat.message import Message
from channelapp.compat.sessions import enforce_ordering


class WebsocketConsumer(BaseConsumer):
    """``connect``, ``receive`` and ``disconnect`` handlers, each given the message and the
    route's keyword arguments; ``send``, ``close`` and ``group_send`` to answer."""

    method_mapping: ClassVar[dict[str, str]] = {
        "websocket.connect": "raw_connect",
        "websocket.receive": "raw_receive",
        "websocket.disconnect": "raw_disconnect",
    }

    #: Copy the user from the HTTP session on connect (implies ``channel_session_user``).
    http_user: ClassVar[bool] = False
    #: ``http_user``, and keep the HTTP session for later messages too.
    http_user_and_session: ClassVar[bool] = False
    #: Kept for porting: channelapp always runs a socket's messages in order.
    strict_ordering: ClassVar[bool] = False
    slight_ordering: ClassVar[bool] = False
    groups: ClassVar[list[str] | tuple[str, ...] | None] = None

    path: str

    def get_handler(self, message: Message, **kwargs: Any) -> Callable[..., Any]:
        if self.http_user or self.http_user_and_session:
            self.channel_session_user = True  # type: ignore[misc]
        self.path = message["path"]
        handler = super().get_handler(message, **kwargs)
        if self.http_user_and_session:
            handler = channel_and_http_session_user_from_http(handler)
        elif self.http_user:
            handler = channel_session_user_from_http(handler)
        if self.strict_ordering:
            handler = enforce_ordering(handler, slight=False)
        return handler

    def connection_groups(self, **kwargs: Any) -> list[str] | tuple[str, ...]:
        """The groups the socket joins on connect and leaves on disconnect."""
        return self.groups or []

    def _rejected(self, message: Message) -> bool:
        state = current_dispatch()
        reply = message.reply_channel
        return (
            state is not None
            and reply is not None
            and state.connecting == reply.name
            and state.closed
            and not state.accepted
        )

    def raw_connect(self, message: Message, **kwargs: Any) -> None:
        self.connect(message, **kwargs)
        if self._rejected(message):
            return
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).add(message.reply_channel)  # type: ignore[arg-type]

    def connect(self, message: Message, **kwargs: Any) -> None:
        """Accepts the socket; override to check or refuse it."""
        self.message.reply_channel.send({"accept": True})  # type: ignore[union-attr]

    def raw_receive(self, message: Message, **kwargs: Any) -> None:
        if "text" in message:
            self.receive(text=message["text"], **kwargs)
        else:
            self.receive(bytes=message["bytes"], **kwargs)

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        """Called with each frame's text or bytes."""

    @staticmethod
    def _frame(text: str | None, bytes: bytes | None, close: bool | int) -> dict[str, Any]:
        message: dict[str, Any] = {}
        if close:
            message["close"] = close
        if text is not None:
            message["text"] = text
        elif bytes is not None:
            message["bytes"] = bytes
        else:
            raise ValueError("You must pass text or bytes")
        return message

    def send(
        self, text: str | None = None, bytes: bytes | None = None, close: bool | int = False
    ) -> None:
        self.message.reply_channel.send(self._frame(text, bytes, close))  # type: ignore[union-attr]

    @classmethod
    def group_send(
        cls,
        name: str,
        text: str | None = None,
        bytes: bytes | None = None,
        close: bool | int = False,
    ) -> None:
        Group(name).send(cls._frame(text, bytes, close))

    def close(self, status: bool | int = True) -> None:
        """Closes the socket (``status``: True for 1000, or a close code)."""
        self.message.reply_channel.send({"close": status})  # type: ignore[union-attr]

    def raw_disconnect(self, message: Message, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).discard(message.reply_channel)  # type: ignore[arg-type]
        self.disconnect(message, **kwargs)

    def disconnect(self, message: Message, **kwargs: Any) -> None:
        """Called when the socket has closed."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """Frames are JSON text: ``receive(content)`` gets it decoded, ``send(content)`` encodes."""

    def raw_receive(self, message: Message, **kwargs: Any) -> None:
        if "text" in message:
            self.receive(self.decode_json(message["text"]), **kwargs)
        else:
            raise ValueError("No text section for incoming WebSocket frame!")

    def receive(self, content: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Called with each frame's decoded JSON."""

    def send(self, content: Any, close: bool | int = False) -> None:  # type: ignore[override]
        super().send(text=self.encode_json(content), close=close)

    @classmethod
    def decode_json(cls, text: str) -> Any:
        return json.loads(text)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content)

    @classmethod
    def group_send(cls, name: str, content: Any, close: bool | int = False) -> None:  # type: ignore[override]
        WebsocketConsumer.group_send(name, cls.encode_json(content), close=close)
