"""A shard whose Redis is found through Redis Sentinel, and follows it when it fails over.

URL form (accepted wherever a shard URL is)::

    redis+sentinel://[[user]:password@]host1:26379,host2:26379/<master-name>[/db]
        [?sentinel_password=...&failover_timeout=15]

The password in the URL (or the layer's ``password`` when the URL has none) is the
master's and its replicas' (``requirepass``); the sentinels' own password
(``requirepass`` in sentinel.conf) is the ``sentinel_password`` query parameter, else
``CHANNELAPP_REDIS_SENTINEL_PASSWORD`` (how a pod gets it: passwords never go in the URLs of
its env). A host without a port uses 26379.

Where the master is gets asked only when a connection is made, never per command: the
sentinels in the order given, the first that answers ``SENTINEL
get-master-addr-by-name``; its answer is trusted only when ``ROLE`` on that address
says ``master`` (a sentinel may still name the old master during a failover).

While the shard fails over (the connection is lost or refused, the server answers
``READONLY``, ``LOADING`` or ``NOREPLICAS``, Sentinel announces ``+switch-master``),
commands that certainly did not run are sent again, on a new connection to the master
Sentinel names, for up to ``failover_timeout`` seconds; then the shard is unavailable. A
command that was written before its connection broke may have run: it is never sent again
(the layer delivers at most once), and the caller hears ``ShardUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection

from channelapp.layer.wire import MultiplexedConnection, NotSent, reply_error

log = logging.getLogger("channelapp.layer")

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_FAILOVER_TIMEOUT = 15.0
_QUERY_KEYS = ("sentinel_password", "failover_timeout")
# The sentinels' password when the URL names none (a pod's env never holds one in a URL).
SENTINEL_PASSWORD_ENV = "CHANNELAPP_REDIS_SENTINEL_PASSWORD"
# Error replies of a server that is not a writable master now: the command did not run.
_FAILOVER_ERRORS = ("READONLY", "NOREPLICAS", "LOADING")
# Between two attempts to reach the new master: doubling from the first to the last.
_FIRST_DELAY = 0.05
_LONGEST_DELAY = 0.2


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # the master's (and replicas') password
    sentinel_password: str | None = None
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(f"{SCHEME}://")


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, port_text = text, ""
    if text.startswith("["):  # [IPv6]:port
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"Sentinel URL {url!r}: bad address {text!r}")
        port_text = rest[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not host:
        raise ValueError(f"Sentinel URL {url!r}: a sentinel address has no host")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"Sentinel URL {url!r}: bad port in {text!r}")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The sentinels, master name, db and passwords of ``url``; ``ValueError`` says what is wrong.

    Messages name the URL without its passwords.
    """
    shown = redact_sentinel_url(url)
    if not is_sentinel_url(url):
        raise ValueError(f"Sentinel URL must start with {SCHEME}://, got {shown!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"Sentinel URL {shown!r}: bad address ({exc})") from None
    if parts.fragment:
        raise ValueError(f"Sentinel URL {shown!r}: no #fragment is allowed")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep and secret else None
    if not hosts:
        raise ValueError(f"Sentinel URL {shown!r}: no sentinel address")
    sentinels = tuple(_host_port(h, shown) for h in hosts.split(","))
    segments = parts.path.split("/")[1:] if parts.path else []
    if not segments or not segments[0] or len(segments) > 2:
        raise ValueError(
            f"Sentinel URL {shown!r}: the path must be /<master-name> or /<master-name>/<db>"
        )
    master_name = unquote(segments[0])
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"Sentinel URL {shown!r}: db must be a number, got {segments[1]!r}")
        db = int(segments[1])
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            raise ValueError(
                f"Sentinel URL {shown!r}: unknown option {key!r} (known: {', '.join(_QUERY_KEYS)})"
            )
        if key in options:
            raise ValueError(f"Sentinel URL {shown!r}: option {key!r} given twice")
        options[key] = value
    failover_timeout = DEFAULT_FAILOVER_TIMEOUT
    if "failover_timeout" in options:
        try:
            failover_timeout = float(options["failover_timeout"])
        except ValueError:
            failover_timeout = -1.0
        if not 0 < failover_timeout < 3600:
            raise ValueError(
                f"Sentinel URL {shown!r}: failover_timeout must be seconds in (0, 3600), "
                f"got {options['failover_timeout']!r}"
            )
    return SentinelTarget(
        sentinels=sentinels,
        master_name=master_name,
        db=db,
        username=username,
        password=password,
        sentinel_password=(
            options.get("sentinel_password") or os.environ.get(SENTINEL_PASSWORD_ENV) or None
        ),
        failover_timeout=failover_timeout,
    )


def redact_sentinel_url(url: str) -> str:
    """``url`` with its passwords (the master's and the sentinels') replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    path, question, query = tail.partition("?")
    if question:
        query = "&".join(
            f"{k}=***" if k == "sentinel_password" else f"{k}={v}"
            for k, _, v in (p.partition("=") for p in query.split("&"))
        )
    return f"{scheme}://{netloc}{slash}{path}{question}{query}"


async def _ask(
    host: str, port: int, commands: Sequence[Sequence[Any]], timeout: float
) -> list[Any]:
    """Send ``commands`` on a connection of their own and return their replies (errors in place);
    an error answering one but the last (AUTH) is raised."""

    async def exchange() -> list[Any]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
            parser = hiredis.Reader()
            replies: list[Any] = []
            while len(replies) < len(commands):
                data = await reader.read(65536)
                if not data:
                    raise redis_errors.ConnectionError(f"{host}:{port} closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    replies.append(
                        reply_error(reply) if isinstance(reply, hiredis.ReplyError) else reply
                    )
            return replies
        finally:
            writer.close()

    try:
        replies = await asyncio.wait_for(exchange(), timeout)
    except TimeoutError:
        raise redis_errors.TimeoutError(f"{host}:{port} did not answer within {timeout}s") from None
    for reply in replies[:-1]:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _auth(username: str | None, password: str | None) -> list[tuple[str, ...]]:
    if not password:
        return []
    return [("AUTH", username, password) if username else ("AUTH", password)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NoMasterFound(redis_errors.ConnectionError):
    """No sentinel named a master that says it is one (a failover may be in progress)."""


class MayHaveRun(redis_errors.ConnectionError):
    """The connection broke after the commands were written: they may or may not have run."""


class SentinelResolver:
    """Asks the sentinels where the master is; used only when a connection is made."""

    def __init__(self, target: SentinelTarget, *, password: str | None, timeout: float) -> None:
        self.target = target
        self.password = target.password or password
        self.timeout = timeout
        self.resolutions = 0  # how many times a master was looked up (not per command)

    async def master(self) -> tuple[str, int]:
        """The master's (host, port), checked with ``ROLE``; ``NoMasterFound`` if none is."""
        self.resolutions += 1
        target = self.target
        why: list[str] = []
        for host, port in target.sentinels:
            try:
                reply = (
                    await _ask(
                        host,
                        port,
                        [
                            *_auth(None, target.sentinel_password),
                            ("SENTINEL", "get-master-addr-by-name", target.master_name),
                        ],
                        self.timeout,
                    )
                )[-1]
            except (OSError, redis_errors.RedisError) as exc:
                why.append(f"sentinel {host}:{port}: {exc}")
                continue
            if isinstance(reply, Exception) or not reply:
                why.append(f"sentinel {host}:{port} names no master: {reply}")
                continue
            address = (_text(reply[0]), int(reply[1]))
            try:
                role = (
                    await _ask(
                        *address,
                        [*_auth(target.username, self.password), ("ROLE",)],
                        self.timeout,
                    )
                )[-1]
            except (OSError, redis_errors.RedisError) as exc:
                why.append(f"sentinel {host}:{port} names {address[0]}:{address[1]}: {exc}")
                continue
            if isinstance(role, list) and role and _text(role[0]) == "master":
                return address
            why.append(
                f"sentinel {host}:{port} names {address[0]}:{address[1]}, "
                f"which is not a master ({role!r})"
            )
        raise NoMasterFound(f"no master {target.master_name!r} found: {'; '.join(why)}")


class SentinelPoolConnection(Connection):
    """A redis-py connection (blocking pops, pipelines) that asks Sentinel where to connect."""

    def __init__(self, *, resolver: SentinelResolver, **kwargs: Any) -> None:
        self.resolver = resolver
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.resolver.master()
        await super()._connect()  # type: ignore[no-untyped-call]


class SwitchWatcher:
    """Hears Sentinel's ``+switch-master`` for one master and calls ``on_switch(host, port)``.

    A master demoted while it stays up (``SENTINEL FAILOVER``, a partition that heals) keeps
    its connections and takes writes, lost when it resyncs, until Sentinel reconfigures it
    (seconds later); the announcement moves the layer's connections at once. One
    subscription to the first sentinel that answers, in the event loop that connected.
    """

    def __init__(
        self,
        target: SentinelTarget,
        on_switch: Callable[[str, int], Awaitable[None]],
        *,
        timeout: float,
    ) -> None:
        self.target = target
        self.on_switch = on_switch
        self.timeout = timeout
        self.switches = 0  # announcements heard for this master
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop or self._task.done():
            self._loop = loop
            self._task = loop.create_task(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and self._loop is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        delay = _FIRST_DELAY
        while True:
            for host, port in self.target.sentinels:
                try:
                    await self._listen(host, port)
                except (OSError, TimeoutError, redis_errors.RedisError) as exc:
                    log.debug("not hearing sentinel %s:%d: %s", host, port, exc)
                else:
                    delay = _FIRST_DELAY  # it had answered: start the round again soon
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _listen(self, host: str, port: int) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
        try:
            commands: list[tuple[Any, ...]] = [
                *_auth(None, self.target.sentinel_password),
                ("SUBSCRIBE", "+switch-master"),
            ]
            writer.write(b"".join(hiredis.pack_command(c) for c in commands))
            parser = hiredis.Reader()
            while data := await reader.read(65536):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise reply_error(reply)
                    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                        # <master name> <old ip> <old port> <new ip> <new port>
                        name, *_, new_host, new_port = _text(reply[2]).split()
                        if name == self.target.master_name:
                            self.switches += 1
                            log.warning("sentinel: +switch-master %s", _text(reply[2]))
                            try:
                                await self.on_switch(new_host, int(new_port))
                            except Exception:
                                log.exception("reconnecting after +switch-master failed")
        finally:
            writer.close()


class SentinelMultiplexedConnection(MultiplexedConnection):
    """The shard's multiplexed connection, to wherever Sentinel says the master is."""

    def __init__(
        self,
        resolver: SentinelResolver,
        *args: Any,
        watcher: SwitchWatcher | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.resolver = resolver
        self.watcher = watcher

    async def _connect(self) -> None:
        host, port = await self.resolver.master()
        self._kwargs = {**self._kwargs, "host": host, "port": port}
        await super()._connect()
        if self.watcher is not None:
            self.watcher.ensure_running()

    @property
    def address(self) -> tuple[str, int]:
        """Where it connects (or last connected)."""
        return (self._kwargs.get("host", ""), int(self._kwargs.get("port", 0)))

    @property
    def usable(self) -> bool:
        """Connected and set up, in the running event loop: commands go out at once."""
        return self._usable and self._loop is asyncio.get_running_loop()

    async def connect(self) -> None:
        """Connected and set up (asking Sentinel first if need be); nothing is sent."""
        if self._loop is not asyncio.get_running_loop():
            self._forget_other_loop()
        if not self._usable:
            await self._ensure_connected()


def is_failover_reply(reply: Any) -> bool:
    """An error reply that means the command did not run because the server is not a
    writable master now: demoted to a replica (``READONLY``), loading its data (``LOADING``),
    or without the replicas ``min-replicas-to-write`` asks for (``NOREPLICAS``: a master
    whose replica was just promoted)."""
    if isinstance(reply, redis_errors.BusyLoadingError | redis_errors.ReadOnlyError):
        return True
    if not isinstance(reply, redis_errors.ResponseError):
        return False
    # A redis-py pipeline prefixes the reply: "Command # 1 (...) of pipeline caused error: ".
    text = str(reply).rpartition("caused error: ")[2]
    return text.startswith(_FAILOVER_ERRORS)


async def execute_through_failover(
    wire: SentinelMultiplexedConnection, commands: Sequence[Sequence[Any]], timeout: float
) -> list[Any]:
    """Replies to ``commands``, sending again those that certainly did not run, for up to
    ``timeout`` seconds while the master fails over.

    Not connected (refused, no master found yet), lost before the commands were written
    (``NotSent``), answered ``READONLY``/``LOADING``: tried again on a new connection.
    Lost after they were written: ``MayHaveRun`` at once, as nobody knows whether they ran. When
    the time is up the last failure is raised, or the replies are returned with the
    failover errors in place.
    """
    results: list[Any] = [None] * len(commands)
    pending = list(range(len(commands)))
    if wire.usable:  # the usual case: one round trip, and a scan of the replies
        try:
            results = await wire.execute_many(commands)
        except NotSent:
            pass
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise MayHaveRun(str(exc)) from exc
        else:
            pending = [
                i
                for i, r in enumerate(results)
                if isinstance(r, Exception) and is_failover_reply(r)
            ]
            if not pending:
                return results
            wire.retire()  # not the master any more: ask Sentinel again
    return await _resend_through_failover(wire, commands, results, pending, timeout)


async def _resend_through_failover(
    wire: SentinelMultiplexedConnection,
    commands: Sequence[Sequence[Any]],
    results: list[Any],
    pending: list[int],
    timeout: float,
) -> list[Any]:
    """The slow path of :func:`execute_through_failover`: ``results`` holds the replies so
    far; the commands at ``pending`` certainly did not run and are still to be sent."""
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY
    while True:
        failure: Exception | None = None
        try:
            await wire.connect()
        except redis_errors.AuthenticationError:
            raise
        except (OSError, redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            failure = exc  # nothing was sent
        else:
            try:
                replies = await wire.execute_many([commands[i] for i in pending])
            except NotSent as exc:
                failure = exc
            except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
                raise MayHaveRun(str(exc)) from exc
            else:
                for i, reply in zip(pending, replies, strict=True):
                    results[i] = reply
                pending = [i for i in pending if is_failover_reply(results[i])]
                if not pending:
                    return results
                wire.retire()  # not the master any more: ask Sentinel again
        if time.monotonic() + delay > deadline:
            if failure is not None:
                raise failure
            return results
        await asyncio.sleep(delay)
        delay = min(delay * 2, _LONGEST_DELAY)
