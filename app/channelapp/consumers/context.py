"""What a consumer sees of the world while it handles one message.

:class:`Context` is for async consumers; ``ctx.sync`` (a :class:`SyncContext`) offers
the same actions as blocking calls for consumers that are plain ``def``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from channelapp.layer import BaseChannelLayer
from channelapp.sessions import Session, SessionStore
from channelapp.settings import Settings
from channelapp.sync import call


@dataclass
class Context:
    layer: BaseChannelLayer
    settings: Settings
    channel: str
    message: dict[str, Any]
    sessions: SessionStore
    kwargs: dict[str, Any] = field(default_factory=dict)
    _session: Session | None = None
    #: An ``http.response.start`` was sent: a failure now can only cut the response short.
    response_started: bool = False

    @property
    def sync(self) -> SyncContext:
        """This context's actions as blocking calls, for sync consumers (worker threads)."""
        return SyncContext(self)

    @property
    def reply_channel(self) -> str | None:
        return self.message.get("reply_channel")

    async def session(self) -> Session:
        """The per-socket session (keyed by reply channel), loaded on first use."""
        if self._session is None:
            if not self.reply_channel:
                raise RuntimeError(
                    f"messages on {self.channel!r} have no reply_channel, so no session"
                )
            self._session = await self.sessions.load(self.reply_channel)
        return self._session

    async def save_session(self) -> None:
        if self._session is not None and self._session.modified:
            await self.sessions.save(self._session)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self.layer.send(channel, message)

    async def reply(self, message: dict[str, Any]) -> None:
        if not self.reply_channel:
            raise RuntimeError(f"messages on {self.channel!r} have no reply_channel")
        if message.get("type") == "http.response.start":
            self.response_started = True
        await self.layer.send(self.reply_channel, message)

    async def group_add(self, group: str, channel: str | None = None) -> None:
        await self.layer.group_add(group, channel or self._require_reply())

    async def group_discard(self, group: str, channel: str | None = None) -> None:
        await self.layer.group_discard(group, channel or self._require_reply())

    async def group_send(self, group: str, message: dict[str, Any]) -> int:
        return await self.layer.group_send(group, message)

    def _require_reply(self) -> str:
        if not self.reply_channel:
            raise RuntimeError("this message has no reply_channel")
        return self.reply_channel


class SyncContext:
    """The blocking face of a :class:`Context`: each call runs on the worker's event loop and
    waits for it, so call it from a consumer thread, never from async code."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def channel(self) -> str:
        return self.ctx.channel

    @property
    def message(self) -> dict[str, Any]:
        return self.ctx.message

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.ctx.kwargs

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def reply_channel(self) -> str | None:
        return self.ctx.reply_channel

    def session(self) -> Session:
        return call(self.ctx.session())

    def send(self, channel: str, message: dict[str, Any]) -> None:
        call(self.ctx.send(channel, message))

    def reply(self, message: dict[str, Any]) -> None:
        call(self.ctx.reply(message))

    def group_add(self, group: str, channel: str | None = None) -> None:
        call(self.ctx.group_add(group, channel))

    def group_discard(self, group: str, channel: str | None = None) -> None:
        call(self.ctx.group_discard(group, channel))

    def group_send(self, group: str, message: dict[str, Any]) -> int:
        return call(self.ctx.group_send(group, message))
