"""Channels 1.x's exceptions that consumers raise to act on their socket."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channelapp.compat.message import Message


class DenyConnection(Exception):
    """Raised in a ``websocket.connect`` consumer: the socket is refused (HTTP 403)."""


class ChannelSocketException(Exception):
    """Raised in a consumer: its ``run(message)`` acts on the message's socket."""

    def run(self, message: Message) -> None:
        raise NotImplementedError


class WebsocketCloseException(ChannelSocketException):
    """Raised in a WebSocket consumer: the socket is closed (with ``code``, else 1000)."""

    def __init__(self, code: int | None = None) -> None:
        if code is not None and code != 1000 and not 3000 <= code <= 4999:
            raise ValueError(f"invalid close code {code} (must be 1000 or from [3000, 4999])")
        super().__init__(code)
        self._code = code

    def run(self, message: Message) -> None:
        reply = message.reply_channel
        if reply is None or not reply.name.startswith("websocket."):
            raise ValueError("You cannot raise CloseWebsocketError from a non-websocket handler.")
        reply.send({"close": self._code or True})
