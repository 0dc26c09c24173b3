"""One multiplexed connection per shard: every command on one socket, replies matched in order.

redis-py checks a connection out of its pool for each command and runs the
command through retry, timeout and observability layers: about 100 µs of
Python per command, most of what a send or a receive costs. The layer's hot
path (script calls, non-blocking pops, session reads) goes through this
connection instead. Commands issued in the same event-loop turn leave in one
``write`` (pipelining by construction, as the Redis protocol allows), are
packed by hiredis and their replies parsed by hiredis's C reader.

Blocking commands (BLPOP) stay on redis-py's pool: they hold their connection.
Connection set-up (TLS context, AUTH, SELECT) reuses the settings redis-py
parsed from the shard URL, so both paths talk to the same server the same way.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

Command = Sequence[Any]


def reply_error(err: hiredis.ReplyError) -> redis_errors.RedisError:
    """The redis-py exception for an error reply, so callers handle one family of errors."""
    text = str(err)
    if text.startswith("NOSCRIPT"):
        return redis_errors.NoScriptError(text)
    if text.startswith("LOADING"):
        return redis_errors.BusyLoadingError(text)
    if text.startswith(("NOAUTH", "WRONGPASS")) or "invalid password" in text:
        return redis_errors.AuthenticationError(text)
    return redis_errors.ResponseError(text)


class NotSent(redis_errors.ConnectionError):
    """The connection was lost before these commands were written: safe to send again."""


class _Batch:
    """Replies of one submitted batch of commands, resolved when the last one arrives."""

    __slots__ = ("expected", "future", "replies", "sent_at", "written")

    def __init__(self, expected: int, future: asyncio.Future[list[Any]], sent_at: float) -> None:
        self.expected = expected
        self.replies: list[Any] = []
        self.future = future
        self.sent_at = sent_at
        self.written = False


class _Protocol(asyncio.Protocol):
    """Forwards to its owner only while it is the owner's current connection.

    A connection aborted after a timeout reports its loss a loop turn later; by
    then a new connection may be up, and that one must not be failed.
    """

    def __init__(self, owner: MultiplexedConnection) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        if self.owner._protocol is self:
            self.owner._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner._protocol is self:
            self.owner._lost(exc)


class MultiplexedConnection:
    """Auto-pipelined commands over one connection, reconnecting lazily after a loss.

    ``execute_many`` returns the replies in order; error replies are returned in
    place as redis-py exceptions. A lost or timed-out connection fails every
    command in flight with ``ConnectionError``/``TimeoutError``; the next call
    reconnects.
    """

    def __init__(
        self,
        connection_kwargs: dict[str, Any],
        connection_class: type,
        *,
        connect_timeout: float,
        command_timeout: float,
    ) -> None:
        self._kwargs = connection_kwargs
        self._class = connection_class
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._reader: Any = None
        # Called when the server closes the connection (or it breaks): perhaps a restart.
        self.on_lost: Callable[[], None] | None = None
        self._reset(None)

    def _reset(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """No connection, nothing queued: the state of a new object, bound to ``loop``."""
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._ready = False  # connected and set up (AUTH, SELECT): callers may submit
        self._inflight: deque[_Batch] = deque()
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._close_when_answered = False  # a retired connection: see retire()

    @property
    def _usable(self) -> bool:
        return self._ready and self._transport is not None and not self._transport.is_closing()

    # --- connecting -----------------------------------------------------------------------

    def _forget_other_loop(self) -> None:
        """Drop a connection made in another (finished) event loop without touching that loop.

        A layer may outlive the loop it was first used in (``asyncio.run`` per test, a
        sync wrapper); its transport, timer and futures belong to that loop and can
        neither be used nor completed from this one.
        """
        self._reset(asyncio.get_running_loop())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        kw = self._kwargs

        def factory() -> _Protocol:
            return _Protocol(self)

        if issubclass(self._class, UnixDomainSocketConnection):
            coro = loop.create_unix_connection(factory, kw["path"])
        else:
            ssl_context = None
            if issubclass(self._class, SSLConnection):
                ssl_context = self._class(**kw).ssl_context.get()
            coro = loop.create_connection(
                factory, kw.get("host", "localhost"), kw.get("port", 6379), ssl=ssl_context
            )
        try:
            transport, protocol = await asyncio.wait_for(coro, self.connect_timeout)
        except TimeoutError:
            raise redis_errors.TimeoutError(
                f"connecting took longer than {self.connect_timeout}s"
            ) from None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._reader = hiredis.Reader()
        self._protocol = protocol
        self._transport = transport
        setup: list[Command] = []
        if kw.get("password"):
            user = kw.get("username")
            setup.append(("AUTH", user, kw["password"]) if user else ("AUTH", kw["password"]))
        if kw.get("db"):
            setup.append(("SELECT", kw["db"]))
        if setup:
            replies = await self._submit(setup)
            for reply in replies:
                if isinstance(reply, redis_errors.RedisError):
                    self._abort(reply)
                    if isinstance(reply, redis_errors.ResponseError) and "AUTH" in str(reply):
                        raise redis_errors.AuthenticationError(str(reply))
                    raise reply
        self._ready = True

    async def _ensure_connected(self) -> None:
        """Connect once for every caller waiting; a cancelled connector hands over to a waiter."""
        while not self._usable:
            connecting = self._connecting
            if connecting is None:
                connecting = self._connecting = asyncio.get_running_loop().create_future()
                try:
                    await self._connect()
                except asyncio.CancelledError:
                    self._abort(redis_errors.ConnectionError("connecting was cancelled"))
                    connecting.cancel()
                    raise
                except BaseException as exc:
                    self._abort(redis_errors.ConnectionError(f"connecting failed: {exc}"))
                    connecting.set_exception(exc)
                    connecting.exception()  # retrieved: each waiter re-raises it
                    raise
                else:
                    connecting.set_result(None)
                finally:
                    self._connecting = None
            else:
                try:
                    await asyncio.shield(connecting)
                except asyncio.CancelledError:
                    if not connecting.cancelled():
                        raise  # this caller was cancelled
                    # the connector was cancelled, not us: try again ourselves

    # --- commands -------------------------------------------------------------------------

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        if self._loop is not asyncio.get_running_loop():
            self._forget_other_loop()
        if not self._usable:
            await self._ensure_connected()
        return await self._submit(commands)

    async def execute(self, *command: Any) -> Any:
        reply = (await self.execute_many((command,)))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _submit(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not commands:
            future.set_result([])
            return future
        self._outbox.extend(hiredis.pack_command(tuple(c)) for c in commands)
        self._inflight.append(_Batch(len(commands), future, time.monotonic()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.command_timeout, self._check_timeout)
        return future

    def _flush(self) -> None:
        """Everything submitted during this loop turn leaves in one write."""
        self._flush_scheduled = False
        if not self._outbox:
            return
        if self._transport is None or self._transport.is_closing():
            # Lost before anything of the outbox left: those batches fail as NotSent.
            self._abort(redis_errors.ConnectionError("connection to redis lost"))
            return
        data = b"".join(self._outbox)
        self._outbox.clear()
        for batch in reversed(self._inflight):
            if batch.written:
                break
            batch.written = True
        self._transport.write(data)

    def _received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        inflight = self._inflight
        try:
            while True:
                reply = reader.gets()
                if reply is False:
                    return
                if isinstance(reply, hiredis.ReplyError):
                    reply = reply_error(reply)
                batch = inflight[0]
                batch.replies.append(reply)
                if len(batch.replies) == batch.expected:
                    inflight.popleft()
                    if not batch.future.done():
                        batch.future.set_result(batch.replies)
                    if not inflight and self._close_when_answered:
                        self._shut("connection retired")
                        return
        except (hiredis.ProtocolError, IndexError) as exc:
            self._abort(redis_errors.ConnectionError(f"unparseable reply from redis: {exc}"))

    def _check_timeout(self) -> None:
        self._watchdog = None
        if not self._inflight:
            return
        age = time.monotonic() - self._inflight[0].sent_at
        if age >= self.command_timeout:
            self._abort(redis_errors.TimeoutError(f"no reply within {self.command_timeout}s"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(
            self.command_timeout - age, self._check_timeout
        )

    # --- failure and close ----------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        """Fail every batch: with ``exc`` if it was written, with NotSent if not."""
        inflight, self._inflight = self._inflight, deque()
        self._outbox.clear()
        not_sent = NotSent(f"not sent: {exc}")
        for batch in inflight:
            if not batch.future.done():
                batch.future.set_exception(exc if batch.written else not_sent)
                batch.future.exception()  # a caller that went away must not warn

    def _detach(self, exc: Exception) -> asyncio.Transport | None:
        """Forget the current connection and fail what was queued on it; returns its transport."""
        transport, self._transport = self._transport, None
        self._protocol, self._ready = None, False
        self._fail(exc)
        return transport

    def _abort(self, exc: Exception) -> None:
        transport = self._detach(exc)
        if transport is not None:
            transport.abort()

    def _lost(self, exc: Exception | None) -> None:
        self._detach(redis_errors.ConnectionError(f"connection to redis lost: {exc or 'closed'}"))
        if self.on_lost is not None:
            self.on_lost()

    def retire(self) -> None:
        """Take no more commands on this connection (the next call connects anew) but let
        the ones already written have their replies before it closes.

        For a server that answered that it is not the master (``READONLY``, ``NOREPLICAS``):
        its answers to the other callers' commands are as certain (each refused one is sent
        again, a reply is a reply), where closing at once would leave every one of them
        uncertain, and so refused. Commands not written yet fail as ``NotSent``.
        """
        transport, protocol = self._transport, self._protocol
        if transport is None or protocol is None or self._loop is not asyncio.get_running_loop():
            return
        written = deque(batch for batch in self._inflight if batch.written)
        self._inflight = deque(batch for batch in self._inflight if not batch.written)
        self._detach(redis_errors.ConnectionError("connection retired"))  # the unwritten
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if not written:
            transport.close()
            return
        old = MultiplexedConnection(
            self._kwargs,
            self._class,
            connect_timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
        )
        old._loop = self._loop
        old._transport, old._protocol, old._reader = transport, protocol, self._reader
        old._inflight = written
        old._close_when_answered = True
        protocol.owner = old
        # No reply in time: those commands fail as on any connection (they may have run).
        old._watchdog = self._loop.call_later(self.command_timeout, old._check_timeout)

    def _shut(self, why: str) -> None:
        """Close the connection now, failing what is still queued on it with ``why``."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        transport = self._detach(redis_errors.ConnectionError(why))
        if transport is not None:
            transport.close()

    async def close(self) -> None:
        if self._loop is not asyncio.get_running_loop():
            self._forget_other_loop()  # that loop's transport went with it
            return
        self._shut("connection closed")
