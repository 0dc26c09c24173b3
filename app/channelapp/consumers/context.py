"""What a consumer sees of the world while it handles one message.

:class:`Context` is for async consumers; ``ctx.sync`` (a :class:`SyncContext`) offers
the same actions as blocking calls for consumers that are plain ``def``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from channelapp.layer import BaseChannelLayer
from channelapp.sessions import Session, SessionStore
from channelapp.settings import Settings
from channelapp.sync import call

# Most body bytes in one ``http.response.body`` message: a larger body is sent as several
# (``more_body``), so responses of any size stream and stay small messages in the layer.
RESPONSE_CHUNK_SIZE = 512 * 1024


P = ParamSpec("P")
R = TypeVar("R")


def _async_only(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """An async action called from sync code (a plain ``def`` in a worker thread, which
    cannot await it) would do nothing, silently: it raises there instead, naming the
    blocking form."""

    @functools.wraps(fn)
    def action(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            name = fn.__name__
            raise RuntimeError(
                f"ctx.{name}() is async and was called from sync code (a plain def, run in a "
                f"worker thread), where it would do nothing: call ctx.sync.{name}(...), "
                "which blocks until done, or make the consumer async def and await it"
            ) from None
        return fn(*args, **kwargs)

    return action


async def _on_loop(fn: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call the async action ``fn`` on the event loop :func:`call` runs this on."""
    return await fn(*args, **kwargs)


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

    @_async_only
    async def session(self) -> Session:
        """The per-socket session (keyed by reply channel), loaded on first use."""
        if self._session is None:
            if not self.reply_channel:
                raise RuntimeError(
                    f"messages on {self.channel!r} have no reply_channel, so no session"
                )
            self._session = await self.sessions.load(self.reply_channel)
        return self._session

    @_async_only
    async def save_session(self) -> None:
        if self._session is not None and self._session.modified:
            await self.sessions.save(self._session)

    @_async_only
    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self.layer.send(channel, message)

    @_async_only
    async def reply(self, message: dict[str, Any]) -> None:
        if not self.reply_channel:
            raise RuntimeError(f"messages on {self.channel!r} have no reply_channel")
        kind = message.get("type")
        if kind == "http.response.start":
            self.response_started = True
        elif kind == "http.response.body":
            body = message.get("body")
            if isinstance(body, (bytes, bytearray, memoryview)) and len(body) > RESPONSE_CHUNK_SIZE:
                await self._reply_in_chunks(self.reply_channel, bytes(body), message)
                return
        await self.layer.send(self.reply_channel, message)

    async def _reply_in_chunks(self, reply: str, body: bytes, message: dict[str, Any]) -> None:
        more = bool(message.get("more_body", False))
        for start in range(0, len(body), RESPONSE_CHUNK_SIZE):
            last = start + RESPONSE_CHUNK_SIZE >= len(body)
            await self.layer.send(
                reply,
                {
                    **message,
                    "body": body[start : start + RESPONSE_CHUNK_SIZE],
                    "more_body": more if last else True,
                },
            )

    @_async_only
    async def group_add(self, group: str, channel: str | None = None) -> None:
        await self.layer.group_add(group, channel or self._require_reply())

    @_async_only
    async def group_discard(self, group: str, channel: str | None = None) -> None:
        await self.layer.group_discard(group, channel or self._require_reply())

    @_async_only
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
        return call(_on_loop(self.ctx.session))

    def send(self, channel: str, message: dict[str, Any]) -> None:
        call(_on_loop(self.ctx.send, channel, message))

    def reply(self, message: dict[str, Any]) -> None:
        call(_on_loop(self.ctx.reply, message))

    def group_add(self, group: str, channel: str | None = None) -> None:
        call(_on_loop(self.ctx.group_add, group, channel))

    def group_discard(self, group: str, channel: str | None = None) -> None:
        call(_on_loop(self.ctx.group_discard, group, channel))

    def group_send(self, group: str, message: dict[str, Any]) -> int:
        return call(_on_loop(self.ctx.group_send, group, message))
