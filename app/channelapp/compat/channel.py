"""Channels 1.x's ``Channel``, ``Group`` and channel layer, blocking calls over the worker's layer.

Channels 1 spoke ASGI 1: a WebSocket reply was ``{"accept": True}``, ``{"text": ...}``,
``{"bytes": ...}``, ``{"close": True or code}`` (any mix, in that order); an HTTP
response was ``{"status", "headers", "content", "more_content"}`` then more
``{"content", "more_content"}`` chunks. Sends to a reply channel (and to a group) are
translated here into the runtime's ``websocket.accept`` / ``websocket.send`` /
``websocket.close`` and ``http.response.start`` / ``http.response.body`` messages.
A message that already has a ``type`` goes as it is.

Every call blocks on the worker's event loop (:func:`channelapp.sync.call`), so it works
from consumers (run in the worker's thread pool) and from Django code running inside a
worker (views, model ``save()``); in a process with no worker (a management command, a
shell) it uses a layer of its own from ``CHANNELAPP_REDIS_URLS``, and without them raises
:class:`channelapp.sync.NotInWorker`.
Sends happen at once: there is no "send when the consumer finishes" buffer, so
``immediately=`` is accepted and changes nothing.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from channelapp.layer import ChannelFull
from channelapp.layer.names import validate_channel_name, validate_group_name
from channelapp.sync import call, current

if TYPE_CHECKING:
    from channelapp.consumers.context import Context

DEFAULT_CHANNEL_LAYER = "default"

_WEBSOCKET_KEYS = frozenset({"accept", "text", "bytes", "close"})
_HTTP_KEYS = frozenset({"status", "headers", "content", "more_content"})


@dataclass
class Dispatch:
    """The message a consumer is handling now (visible to its thread through contextvars)."""

    ctx: Context
    #: The reply channel of the socket whose ``websocket.connect`` is being handled, if any.
    connecting: str | None = None
    accepted: bool = False
    closed: bool = False

    def pending(self, channel: str) -> bool:
        """``channel``'s socket waits for this consumer's accept (or reject)."""
        return self.connecting == channel and not self.accepted and not self.closed


_dispatch: contextvars.ContextVar[Dispatch | None] = contextvars.ContextVar(
    "channelapp_compat_dispatch", default=None
)


def current_dispatch() -> Dispatch | None:
    return _dispatch.get()


def set_dispatch(state: Dispatch | None) -> contextvars.Token[Dispatch | None]:
    return _dispatch.set(state)


def reset_dispatch(token: contextvars.Token[Dispatch | None]) -> None:
    _dispatch.reset(token)


def is_websocket_reply(name: str) -> bool:
    return name.startswith(("websocket.send.", "websocket.send!"))


def is_http_reply(name: str) -> bool:
    return name.startswith(("http.response.", "http.response!"))


def _close_code(value: Any) -> int:
    if value is True:
        return 1000
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"'close' must be True or a close code (int), got {value!r}")


def websocket_messages(content: dict[str, Any], pending: bool = False) -> list[dict[str, Any]]:
    """The runtime messages for one Channels 1 WebSocket reply.

    ``pending``: the socket is still in its handshake (its connect consumer runs now), so
    text or bytes accept it first, and ``close`` (or ``accept: False``) rejects it, as
    Daphne did.
    """
    if "type" in content:
        return [content]
    unknown = set(content) - _WEBSOCKET_KEYS
    if unknown:
        raise ValueError(
            f"a WebSocket reply has the keys accept, text, bytes and close; got {sorted(unknown)}"
        )
    text, data = content.get("text"), content.get("bytes")
    if text is not None and data is not None:
        raise ValueError("a WebSocket reply carries text or bytes, not both")
    close = content.get("close")
    out: list[dict[str, Any]] = []
    accept = content.get("accept")
    if accept is False:
        return [{"type": "websocket.close", "code": 1000}]
    if accept or (pending and (text is not None or data is not None)):
        out.append({"type": "websocket.accept"})
    if text is not None:
        out.append({"type": "websocket.send", "text": text})
    elif data is not None:
        out.append({"type": "websocket.send", "bytes": data})
    if close:
        out.append({"type": "websocket.close", "code": _close_code(close)})
    return out


def http_messages(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The runtime messages for one Channels 1 HTTP response message or chunk."""
    if "type" in content:
        return [content]
    unknown = set(content) - _HTTP_KEYS
    if unknown:
        raise ValueError(
            "an HTTP response has the keys status, headers, content and more_content; "
            f"got {sorted(unknown)}"
        )
    out: list[dict[str, Any]] = []
    if "status" in content:
        headers = [[name, value] for name, value in content.get("headers") or []]
        out.append({"type": "http.response.start", "status": content["status"], "headers": headers})
    elif "headers" in content:
        raise ValueError("headers can only be sent with the status, in the first message")
    out.append(
        {
            "type": "http.response.body",
            "body": content.get("content", b""),
            "more_body": bool(content.get("more_content", False)),
        }
    )
    return out


def _check_content(content: Any) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise TypeError("You can only send dicts as content on channels.")
    return content


class ChannelLayer:
    """Channels 1's channel layer API (``channel_layers["default"]``, ``message.channel_layer``),
    as blocking calls on the worker's layer; replies are translated (see the module)."""

    alias = DEFAULT_CHANNEL_LAYER
    ChannelFull = ChannelFull

    def send(self, channel: str, message: dict[str, Any]) -> None:
        validate_channel_name(channel)
        message = _check_content(message)
        state = current_dispatch()
        if is_websocket_reply(channel):
            pending = state is not None and state.pending(channel)
            messages = websocket_messages(message, pending)
        elif is_http_reply(channel):
            messages = http_messages(message)
        else:
            messages = [message]
        runtime = current()
        for one in messages:
            if state is not None and channel == state.ctx.reply_channel:
                state.ctx.sync.reply(one)  # keeps the runtime's view of the response
            else:
                call(runtime.layer.send(channel, one))
            if state is not None and state.connecting == channel:
                kind = one.get("type")
                if kind == "websocket.accept":
                    state.accepted = True
                elif kind == "websocket.close":
                    state.closed = True

    def send_group(self, group: str, message: dict[str, Any]) -> None:
        validate_group_name(group)
        message = _check_content(message)
        layer = current().layer
        if message and set(message) <= _WEBSOCKET_KEYS:  # a WebSocket reply, to sockets
            messages = websocket_messages(message)
        else:
            messages = [message]
        for one in messages:
            call(layer.group_send(group, one))

    def group_add(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        call(current().layer.group_add(group, channel))

    def group_discard(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        call(current().layer.group_discard(group, channel))


_default_layer = ChannelLayer()


class _ChannelLayers:
    """``channel_layers[alias]``: channelapp has one layer per app, the ``default`` alias."""

    def __getitem__(self, alias: str) -> ChannelLayer:
        if alias != DEFAULT_CHANNEL_LAYER:
            raise KeyError(
                f"channel layer alias {alias!r}: channelapp runs one layer per app, "
                f"aliased {DEFAULT_CHANNEL_LAYER!r} (set with CHANNELAPP_REDIS_URLS)"
            )
        return _default_layer

    def __contains__(self, alias: object) -> bool:
        return alias == DEFAULT_CHANNEL_LAYER


channel_layers = _ChannelLayers()


def _name(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


class Channel:
    """A named channel to send messages to (``Channel("thumbnails").send({...})``)."""

    def __init__(
        self,
        name: str | bytes,
        alias: str = DEFAULT_CHANNEL_LAYER,
        channel_layer: ChannelLayer | None = None,
    ) -> None:
        self.name = validate_channel_name(_name(name))
        self.channel_layer = channel_layer or channel_layers[alias]

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` now (channelapp never defers a send; ``immediately`` is moot)."""
        self.channel_layer.send(self.name, content)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Channel({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Channel) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


class Group:
    """A named set of channels; membership expires after ``group_expiry`` (a day) unless
    renewed by adding again. ``send`` reaches every member."""

    def __init__(
        self,
        name: str | bytes,
        alias: str = DEFAULT_CHANNEL_LAYER,
        channel_layer: ChannelLayer | None = None,
    ) -> None:
        self.name = validate_group_name(_name(name))
        self.channel_layer = channel_layer or channel_layers[alias]

    def add(self, channel: Channel | str) -> None:
        self.channel_layer.group_add(self.name, _channel_name(channel))

    def discard(self, channel: Channel | str) -> None:
        self.channel_layer.group_discard(self.name, _channel_name(channel))

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` to every member now. A WebSocket reply (only the keys text, bytes,
        close, accept) becomes ``websocket.send`` / ``websocket.close``; anything else is sent
        as it is."""
        if not isinstance(content, dict):
            raise ValueError("You can only send dicts as content on channels.")
        self.channel_layer.send_group(self.name, content)

    def __repr__(self) -> str:
        return f"Group({self.name!r})"


def _channel_name(channel: Channel | str) -> str:
    return channel.name if isinstance(channel, Channel) else _name(channel)
