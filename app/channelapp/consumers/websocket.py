"""WebSocket consumers: one instance per message, state in the per-socket session.

Group broadcasts go straight to the members' reply channels as
``websocket.send`` messages, so the protocol server delivers them without a
worker hop.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from channelapp.consumers.context import Context
from channelapp.layer.names import InvalidChannelName, validate_group_name
from channelapp.sessions import Session

log = logging.getLogger("channelapp.consumers")


class WebsocketConsumer:
    #: Groups joined on accept and left on disconnect; ``{name}`` is filled from URL kwargs.
    groups: ClassVar[list[str]] = []

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.message = ctx.message
        self.kwargs = ctx.kwargs
        self.session: Session | None = None

    @property
    def reply_channel(self) -> str:
        return self.ctx._require_reply()

    def _groups(self) -> list[str]:
        return [g.format(**self.kwargs) for g in self.groups]

    async def dispatch(self) -> None:
        self.session = await self.ctx.session()
        kind = self.message.get("type")
        if kind == "websocket.connect":
            await self.connect()
        elif kind == "websocket.receive":
            await self.receive(text=self.message.get("text"), bytes=self.message.get("bytes"))
        elif kind == "websocket.disconnect":
            for group in self._groups():
                try:
                    validate_group_name(group)
                except InvalidChannelName:
                    continue  # never joined (a rejected connect): group_add refuses such names
                await self.ctx.group_discard(group)
            await self.disconnect(self.message.get("code", 1000))
            await self.ctx.sessions.delete(self.reply_channel)
            self.ctx._session = None
            return
        else:
            log.warning("websocket consumer got an unknown message type %r", kind)

    # --- handlers to override ---------------------------------------------------------------

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        pass

    async def disconnect(self, code: int) -> None:
        pass

    # --- actions ----------------------------------------------------------------------------

    async def accept(self, subprotocol: str | None = None) -> None:
        message: dict[str, Any] = {"type": "websocket.accept"}
        if subprotocol:
            message["subprotocol"] = subprotocol
        await self.ctx.reply(message)
        for group in self._groups():
            await self.ctx.group_add(group)

    async def reject(self) -> None:
        await self.ctx.reply({"type": "websocket.close", "code": 1000})

    async def send(self, text: str | None = None, bytes: bytes | None = None) -> None:
        if (text is None) == (bytes is None):
            raise ValueError("send() needs exactly one of text or bytes")
        key = "text" if text is not None else "bytes"
        await self.ctx.reply({"type": "websocket.send", key: text if text is not None else bytes})

    async def close(self, code: int = 1000) -> None:
        await self.ctx.reply({"type": "websocket.close", "code": code})

    async def group_add(self, group: str) -> None:
        await self.ctx.group_add(group)

    async def group_discard(self, group: str) -> None:
        await self.ctx.group_discard(group)

    async def group_send(
        self, group: str, text: str | None = None, bytes: bytes | None = None
    ) -> int:
        key = "text" if text is not None else "bytes"
        return await self.ctx.group_send(
            group, {"type": "websocket.send", key: text if text is not None else bytes}
        )


class JsonWebsocketConsumer(WebsocketConsumer):
    """Text frames carry JSON; a frame that is not JSON closes the socket with 1007."""

    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        raw = text if text is not None else (bytes or b"").decode("utf-8", "replace")
        try:
            content = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to decode
            log.info("closing websocket %s: frame is not JSON", self.reply_channel)
            await self.close(1007)
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any) -> None:
        pass

    async def send_json(self, content: Any) -> None:
        await self.send(text=json.dumps(content))

    async def group_send_json(self, group: str, content: Any) -> int:
        return await self.group_send(group, text=json.dumps(content))
