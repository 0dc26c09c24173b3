"""WebSocket consumers: one instance per message, state in the per-socket session.

``WebsocketConsumer`` handlers are ``async def``; ``SyncWebsocketConsumer`` handlers
are plain ``def`` run in the worker's thread pool.

Group broadcasts go straight to the members' reply channels as
``websocket.send`` messages, so the protocol server delivers them without a
worker hop.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from typing import Any, ClassVar

from channelapp.consumers.context import Context
from channelapp.layer.names import InvalidChannelName, validate_group_name
from channelapp.sessions import Session
from channelapp.spec import (
    INVALID_PAYLOAD,
    NORMAL_CLOSURE,
    WEBSOCKET_CONNECT,
    WEBSOCKET_DISCONNECT,
    WEBSOCKET_RECEIVE,
)
from channelapp.sync import call, run_sync

log = logging.getLogger("channelapp.consumers")

# (consumer class, handler name) pairs whose handler is of the class's kind: checked once,
# not on every message.
_HANDLER_KIND_CHECKED: set[tuple[type, str]] = set()


class _SocketConsumer:
    """What async and sync WebSocket consumers share: the session, groups and lifecycle."""

    #: Groups joined on accept and left on disconnect; ``{name}`` is filled from URL kwargs.
    groups: ClassVar[list[str]] = []
    #: Handlers are ``async def`` (run on the event loop), else plain ``def`` (in a thread).
    _async_handlers: ClassVar[bool] = True

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.message = ctx.message
        self.kwargs = ctx.kwargs
        self.session: Session | None = None

    @property
    def reply_channel(self) -> str:
        return self.ctx._require_reply()

    def _handler(self, name: str) -> Any:
        """The handler ``name``, refused when it is of the other kind: an async action called
        without await in a plain ``def`` (or an ``async def`` run as a plain one) would do
        nothing, silently."""
        fn = getattr(self, name)
        key = (type(self), name)
        if key in _HANDLER_KIND_CHECKED:
            return fn
        if inspect.iscoroutinefunction(fn) == self._async_handlers:
            _HANDLER_KIND_CHECKED.add(key)
            return fn
        cls = type(self).__name__
        if self._async_handlers:
            raise TypeError(
                f"{cls}.{name} is a plain def, but this consumer's handlers are async def: "
                f"write async def {name} and await its actions (await self.send(...)), or "
                "subclass SyncWebsocketConsumer / SyncJsonWebsocketConsumer, whose handlers "
                "are plain def and whose actions block"
            )
        raise TypeError(
            f"{cls}.{name} is async def, but this consumer's handlers are plain def (run in "
            f"a worker thread): write def {name}, or subclass WebsocketConsumer / "
            "JsonWebsocketConsumer for async def handlers"
        )

    def _groups(self) -> list[str]:
        return [g.format(**self.kwargs) for g in self.groups]

    async def dispatch(self) -> None:
        self.session = await self.ctx.session()
        kind = self.message.get("type")
        if kind == WEBSOCKET_CONNECT:
            await self._on_connect()
        elif kind == WEBSOCKET_RECEIVE:
            await self._on_receive(self.message.get("text"), self.message.get("bytes"))
        elif kind == WEBSOCKET_DISCONNECT:
            for group in self._groups():
                try:
                    validate_group_name(group)
                except InvalidChannelName:
                    continue  # never joined (a rejected connect): group_add refuses such names
                await self.ctx.group_discard(group)
            await self._on_disconnect(self.message.get("code", NORMAL_CLOSURE))
            await self.ctx.sessions.delete(self.reply_channel)
            self.ctx._session = None
            return
        else:
            log.warning("websocket consumer got an unknown message type %r", kind)

    async def _on_connect(self) -> None:
        raise NotImplementedError

    async def _on_receive(self, text: str | None, data: bytes | None) -> None:
        raise NotImplementedError

    async def _on_disconnect(self, code: int) -> None:
        raise NotImplementedError

    # --- the actions, on the event loop -----------------------------------------------------

    async def _accept(self, subprotocol: str | None = None) -> None:
        message: dict[str, Any] = {"type": "websocket.accept"}
        if subprotocol:
            message["subprotocol"] = subprotocol
        await self.ctx.reply(message)
        for group in self._groups():
            await self.ctx.group_add(group)

    async def _send(self, text: str | None, data: bytes | None) -> None:
        if (text is None) == (data is None):
            raise ValueError("send() needs exactly one of text or bytes")
        key = "text" if text is not None else "bytes"
        await self.ctx.reply({"type": "websocket.send", key: text if text is not None else data})

    async def _group_send(self, group: str, text: str | None, data: bytes | None) -> int:
        key = "text" if text is not None else "bytes"
        return await self.ctx.group_send(
            group, {"type": "websocket.send", key: text if text is not None else data}
        )


class WebsocketConsumer(_SocketConsumer):
    """Handlers are ``async def``; one instance per message, state in ``self.session``."""

    async def _on_connect(self) -> None:
        await self._handler("connect")()

    async def _on_receive(self, text: str | None, data: bytes | None) -> None:
        await self._handler("receive")(text=text, bytes=data)

    async def _on_disconnect(self, code: int) -> None:
        await self._handler("disconnect")(code)

    # --- handlers to override ---------------------------------------------------------------

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        pass

    async def disconnect(self, code: int) -> None:
        pass

    # --- actions ----------------------------------------------------------------------------

    async def accept(self, subprotocol: str | None = None) -> None:
        await self._accept(subprotocol)

    async def reject(self) -> None:
        await self.ctx.reply({"type": "websocket.close", "code": NORMAL_CLOSURE})

    async def send(self, text: str | None = None, bytes: bytes | None = None) -> None:
        await self._send(text, bytes)

    async def close(self, code: int = NORMAL_CLOSURE) -> None:
        await self.ctx.reply({"type": "websocket.close", "code": code})

    async def group_add(self, group: str) -> None:
        await self.ctx.group_add(group)

    async def group_discard(self, group: str) -> None:
        await self.ctx.group_discard(group)

    async def group_send(
        self, group: str, text: str | None = None, bytes: bytes | None = None
    ) -> int:
        return await self._group_send(group, text, bytes)


class SyncWebsocketConsumer(_SocketConsumer):
    """Handlers are plain ``def``, run in the worker's thread pool (blocking code, the Django
    ORM); the actions block until done. Same lifecycle as :class:`WebsocketConsumer`."""

    _async_handlers = False

    async def _on_connect(self) -> None:
        await run_sync(self._handler("connect"))

    async def _on_receive(self, text: str | None, data: bytes | None) -> None:
        await run_sync(functools.partial(self._handler("receive"), text=text, bytes=data))

    async def _on_disconnect(self, code: int) -> None:
        await run_sync(self._handler("disconnect"), code)

    # --- handlers to override ---------------------------------------------------------------

    def connect(self) -> None:
        self.accept()

    def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        pass

    def disconnect(self, code: int) -> None:
        pass

    # --- actions ----------------------------------------------------------------------------

    def accept(self, subprotocol: str | None = None) -> None:
        call(self._accept(subprotocol))

    def reject(self) -> None:
        self.ctx.sync.reply({"type": "websocket.close", "code": NORMAL_CLOSURE})

    def send(self, text: str | None = None, bytes: bytes | None = None) -> None:
        call(self._send(text, bytes))

    def close(self, code: int = NORMAL_CLOSURE) -> None:
        self.ctx.sync.reply({"type": "websocket.close", "code": code})

    def group_add(self, group: str) -> None:
        self.ctx.sync.group_add(group)

    def group_discard(self, group: str) -> None:
        self.ctx.sync.group_discard(group)

    def group_send(self, group: str, text: str | None = None, bytes: bytes | None = None) -> int:
        return call(self._group_send(group, text, bytes))


def _json_frame(consumer: _SocketConsumer, text: str | None, data: bytes | None) -> Any:
    """The frame's JSON, or _NOT_JSON (the caller closes the socket with 1007)."""
    raw = text if text is not None else (data or b"").decode("utf-8", "replace")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to decode
        log.info("closing websocket %s: frame is not JSON", consumer.reply_channel)
        return _NOT_JSON


_NOT_JSON = object()


class JsonWebsocketConsumer(WebsocketConsumer):
    """Text frames carry JSON; a frame that is not JSON closes the socket with 1007."""

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        content = _json_frame(self, text, bytes)
        if content is _NOT_JSON:
            await self.close(INVALID_PAYLOAD)
            return
        await self._handler("receive_json")(content)

    async def receive_json(self, content: Any) -> None:
        pass

    async def send_json(self, content: Any) -> None:
        await self.send(text=json.dumps(content))

    async def group_send_json(self, group: str, content: Any) -> int:
        return await self.group_send(group, text=json.dumps(content))


class SyncJsonWebsocketConsumer(SyncWebsocketConsumer):
    """:class:`JsonWebsocketConsumer` with plain ``def`` handlers (see SyncWebsocketConsumer)."""

    def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        content = _json_frame(self, text, bytes)
        if content is _NOT_JSON:
            self.close(INVALID_PAYLOAD)
            return
        self._handler("receive_json")(content)

    def receive_json(self, content: Any) -> None:
        pass

    def send_json(self, content: Any) -> None:
        self.send(text=json.dumps(content))

    def group_send_json(self, group: str, content: Any) -> int:
        return self.group_send(group, text=json.dumps(content))
