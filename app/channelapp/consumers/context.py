"""What a consumer sees of the world while it handles one message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from channelapp.layer import BaseChannelLayer
from channelapp.sessions import Session, SessionStore
from channelapp.settings import Settings


@dataclass
class Context:
    layer: BaseChannelLayer
    settings: Settings
    channel: str
    message: dict[str, Any]
    sessions: SessionStore
    kwargs: dict[str, Any] = field(default_factory=dict)
    _session: Session | None = None

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
