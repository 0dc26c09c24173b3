"""One Redis server of a sharded layer: its connection pool, its scripts, its error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from channelapp.layer.common import ShardUnavailable
from channelapp.layer.sentinel import (
    MayHaveRun,
    SentinelMultiplexedConnection,
    SentinelPoolConnection,
    SentinelResolver,
    SwitchWatcher,
    execute_through_failover,
    is_failover_reply,
    is_sentinel_url,
    parse_sentinel_url,
    redact_sentinel_url,
)
from channelapp.layer.wire import MultiplexedConnection, NotSent

log = logging.getLogger("channelapp.layer")

SCRIPT_NAMES = (
    "send",
    "send_blob",
    "send_batch",
    "send_many",
    "pop_many",
    "stats_all",
    "load",
    "group_members",
    "worker_beat",
    "server_beat",
    "servers_dead",
    "group_sweep",
)


# Script name -> (source, sha1). Every shard can run every registered script.
SCRIPTS: dict[str, tuple[str, str]] = {}


def register_script(name: str, src: str) -> None:
    """Make a Lua script callable by name through ``Shard.eval`` (loaded on first NOSCRIPT)."""
    SCRIPTS[name] = (src, hashlib.sha1(src.encode()).hexdigest())


def _lua(name: str) -> str:
    return resources.files("channelapp.layer").joinpath(f"lua/{name}.lua").read_text()


for _name in SCRIPT_NAMES:
    register_script(_name, _lua(_name))

# The scripts that queue messages. On a Sentinel shard each call of one carries a number and
# leaves a receipt (lua/receipts.lua), so a call whose connection broke after it was written
# is sent again to the new master instead of refused: its receipt says whether it ran there.
SENDING_SCRIPTS = ("send", "send_blob", "send_batch", "send_many")
for _name in SENDING_SCRIPTS:
    register_script(f"{_name}+receipt", _lua("receipts").replace("--SCRIPT--", _lua(_name)))

# Scripts that read (or drop what has expired as of the time they are given): running one
# twice does what running it once does, so one cut off by a failover is sent again as well.
IDEMPOTENT_SCRIPTS = ("group_members", "stats_all", "load")

# Between two sends of an idempotent command whose connection broke after it was written.
_RESEND_DELAY = 0.05

# Errors that mean "this shard cannot be reached now"; they become ShardUnavailable.
_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    redis_errors.BusyLoadingError,
)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if is_sentinel_url(url):
        return redact_sentinel_url(url)
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))
    return url


class Shard:
    """A bounded connection pool to one Redis server; commands raise ShardUnavailable when it is down."""

    def __init__(
        self,
        index: int,
        url: str,
        *,
        password: str | None = None,
        max_connections: int = 64,
        ssl_options: dict[str, Any] | None = None,
        connect_timeout: float = 2.0,
        socket_timeout: float = 10.0,
    ) -> None:
        target = parse_sentinel_url(url) if is_sentinel_url(url) else None
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix") and target is None:
            raise ValueError(
                "Redis URL must start with redis://, rediss://, unix:// or redis+sentinel://, "
                f"got {redact(url)!r}"
            )
        self.index = index
        self.url = url
        self.name = redact(url)
        # Sentinel: where the master is, asked at each (re)connect; how long commands wait
        # for a failover to end; script calls refused because they may have run.
        self.resolver: SentinelResolver | None = None
        self.watcher: SwitchWatcher | None = None
        self.failover_timeout = 0.0
        self.refused_uncertain = 0
        self.resent_with_receipts = 0
        # Sentinel: the hash this sender's receipts are kept in (see keep_receipts), the
        # number of its last sending call, the receipts it no longer needs.
        self.receipts: str | None = None
        self._call_number = 0
        self._answered: list[int] = []
        kwargs: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": 10,  # waiting for a free pooled connection
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,  # keep above the longest blocking pop (1 s)
            "socket_keepalive": True,
            "health_check_interval": 15,
        }
        if password and not parts.password:
            kwargs["password"] = password
        if parts.scheme == "rediss":
            kwargs.update(ssl_options or {})
        if target is not None:
            self.resolver = SentinelResolver(target, password=password, timeout=connect_timeout)
            self.watcher = SwitchWatcher(target, self._master_switched, timeout=connect_timeout)
            self.failover_timeout = target.failover_timeout
            kwargs.pop("password", None)
            self.pool = aioredis.BlockingConnectionPool(
                connection_class=SentinelPoolConnection,
                resolver=self.resolver,
                host=target.sentinels[0][0],  # replaced by the master's at each connect
                port=target.sentinels[0][1],
                db=target.db,
                username=target.username,
                password=self.resolver.password,
                **kwargs,
            )
        else:
            try:
                self.pool = aioredis.BlockingConnectionPool.from_url(url, **kwargs)
            except ValueError as exc:
                raise ValueError(f"Redis URL {self.name!r}: {exc}") from None
        self.client = aioredis.Redis(connection_pool=self.pool)
        # The hot path: script calls, non-blocking pops and small reads, auto-pipelined.
        wire_args = (dict(self.pool.connection_kwargs), self.pool.connection_class)
        self._failover_wire: SentinelMultiplexedConnection | None = None
        self.wire: MultiplexedConnection
        if self.resolver is not None:
            self.wire = self._failover_wire = SentinelMultiplexedConnection(
                self.resolver,
                *wire_args,
                watcher=self.watcher,
                connect_timeout=connect_timeout,
                command_timeout=socket_timeout,
            )
        else:
            self.wire = MultiplexedConnection(
                *wire_args, connect_timeout=connect_timeout, command_timeout=socket_timeout
            )
        # The server may have restarted (empty) since its state was last checked: set when it
        # fails or drops a connection, cleared by the layer's lost-state check.
        self.suspect = False
        self.wire.on_lost = self._suspect

    def _suspect(self) -> None:
        self.suspect = True

    def keep_receipts(self, key: str) -> None:
        """On a Sentinel shard, number the sending script calls and keep their receipts in the
        hash ``key`` (one per sender, under the app's prefix): what may have run when the
        master failed is sent again, and runs once. Without it such a call is refused."""
        if self._failover_wire is not None:
            self.receipts = key

    def _with_receipts(
        self, calls: Sequence[tuple[str, Sequence[Any], Sequence[Any]]]
    ) -> tuple[list[tuple[str, Sequence[Any], Sequence[Any]]], list[int]]:
        """The sending calls as their receipt-keeping variants, numbered; the receipts
        answered since the last call ride along to be dropped."""
        assert self.receipts is not None
        numbered: list[tuple[str, Sequence[Any], Sequence[Any]]] = []
        numbers: list[int] = []
        forget = ",".join(map(str, self._answered))
        self._answered.clear()
        ttl = int(self.failover_timeout) + 30
        for name, keys, args in calls:
            if name not in SENDING_SCRIPTS:
                numbered.append((name, keys, args))
                continue
            self._call_number += 1
            numbers.append(self._call_number)
            numbered.append(
                (
                    f"{name}+receipt",
                    (*keys, self.receipts),
                    (*args, self._call_number, forget, ttl),
                )
            )
            forget = ""
        return numbered, numbers

    @contextlib.asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except redis_errors.AuthenticationError as exc:
            raise ShardUnavailable(
                f"redis shard {self.index} ({self.name}): authentication failed: {exc}"
            ) from exc
        except _DOWN as exc:
            self.suspect = True
            raise ShardUnavailable(
                f"redis shard {self.index} ({self.name}) is unavailable during {what}: {exc}"
            ) from exc
        except redis_errors.ResponseError as exc:
            if not is_failover_reply(exc):
                raise
            self.suspect = True
            await self._after_failover_reply()
            raise ShardUnavailable(
                f"redis shard {self.index} ({self.name}) is not a writable master during "
                f"{what}: {exc}"
            ) from exc

    async def _master_switched(self, host: str, port: int) -> None:
        """Sentinel announced a new master: reconnect to it unless already there."""
        self.suspect = True  # its data is to be checked
        if self._failover_wire is not None and self._failover_wire.address != (host, port):
            await self.wire.close()
            await self.pool.disconnect()

    async def _after_failover_reply(self) -> None:
        """READONLY, NOREPLICAS or LOADING: with Sentinel, reconnect (asking where the master
        is now); what is in flight on the old connection still has its answers."""
        if self.resolver is not None:
            self.wire.retire()
            await self.pool.disconnect(inuse_connections=False)

    async def load_scripts(self) -> None:
        replies = await self.wire.execute_many(
            [("SCRIPT", "LOAD", src) for src, _ in SCRIPTS.values()]
        )
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    async def execute(self, *command: Any, wait_out_failover: bool = True) -> Any:
        """One idempotent command (GET, SET, DEL) on the multiplexed connection.

        A connection found dead (a restarted server, an idle connection dropped on
        the way) is retried once on a fresh one, as redis-py would; on a Sentinel shard
        it is sent again, to whichever server is the master, until it is answered or the
        failover bound runs out. Script calls are never sent again once written: a send
        that reached Redis before the connection broke would be queued twice. A probe
        (``wait_out_failover=False``) answers for now instead.
        """
        async with self.guard(str(command[0])):
            if self._failover_wire is not None and wait_out_failover:
                return await self._idempotent_through_failover(self._failover_wire, command)
            try:
                return await self.wire.execute(*command)
            except redis_errors.ConnectionError:
                return await self.wire.execute(*command)

    async def _idempotent_through_failover(
        self, wire: SentinelMultiplexedConnection, command: tuple[Any, ...]
    ) -> Any:
        """Running it twice does no harm, so "may have run" is sent again too: a session
        saved while the master hands over waits for the new master instead of failing."""
        deadline = time.monotonic() + self.failover_timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                (reply,) = await execute_through_failover(wire, [command], left)
            except MayHaveRun:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(_RESEND_DELAY)
                continue
            if isinstance(reply, Exception):
                raise reply  # a failover reply still, after the bound: guard() says so
            return reply

    async def eval_many(
        self, calls: Sequence[tuple[str, Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """Run many scripts in one pipelined round trip; per-call errors are returned in place."""
        async with self.guard("a script call"):
            numbers: list[int] = []
            if self.receipts is not None:
                calls, numbers = self._with_receipts(calls)
            commands = [
                ("EVALSHA", SCRIPTS[name][1], len(keys), *keys, *args) for name, keys, args in calls
            ]
            if self._failover_wire is not None:
                try:
                    idempotent = sum(1 for name, _, _ in calls if name in IDEMPOTENT_SCRIPTS)
                    results = await self._through_failover(
                        self._failover_wire,
                        commands,
                        resend=len(numbers) + idempotent == len(commands),
                    )
                finally:  # answered, or failed for good: either way never sent again
                    self._answered.extend(numbers)
            else:
                try:
                    results = await self.wire.execute_many(commands)
                except NotSent:  # the connection died unnoticed; nothing reached Redis
                    results = await self.wire.execute_many(commands)
            redo = [i for i, r in enumerate(results) if isinstance(r, redis_errors.NoScriptError)]
            if redo:  # a restarted server has an empty script cache
                await self.load_scripts()
                again = await self.wire.execute_many([commands[i] for i in redo])
                for i, r in zip(redo, again, strict=True):
                    results[i] = r
            return results

    async def _through_failover(
        self,
        wire: SentinelMultiplexedConnection,
        commands: list[tuple[Any, ...]],
        *,
        resend: bool = False,
    ) -> list[Any]:
        """Script calls on a Sentinel shard: waiting out a failover. What may have run is sent
        again when every call keeps a receipt or is idempotent (``resend``), refused
        otherwise."""
        deadline = time.monotonic() + self.failover_timeout
        try:
            while True:
                left = max(0.0, deadline - time.monotonic())
                try:
                    results = await execute_through_failover(wire, commands, left)
                    break
                except MayHaveRun:
                    if not resend or time.monotonic() >= deadline:
                        raise
                    self.resent_with_receipts += len(commands)
                    log.info(
                        "redis shard %d (%s): %d script call(s) may have run before the "
                        "connection broke; sent again, their receipts keep them to one run",
                        self.index,
                        self.name,
                        len(commands),
                    )
                    await asyncio.sleep(_RESEND_DELAY)
        except MayHaveRun:
            # Written, then the connection broke: at most once, so not sent again.
            carried = sum(_messages_carried(c) for c in commands)
            self.refused_uncertain += carried
            log.warning(
                "redis shard %d (%s): %d script call(s) carrying %d message(s) may have run "
                "before the connection broke; refused, not sent again (%d so far)",
                self.index,
                self.name,
                len(commands),
                carried,
                self.refused_uncertain,
            )
            raise
        for i, result in enumerate(results):
            # Still READONLY or LOADING when failover_timeout ran out.
            if isinstance(result, Exception) and is_failover_reply(result):
                self.suspect = True
                results[i] = ShardUnavailable(
                    f"redis shard {self.index} ({self.name}) is unavailable: {result}"
                )
        return results

    async def eval(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        result = (await self.eval_many([(name, keys, args)]))[0]
        if isinstance(result, Exception):
            if isinstance(result, _DOWN) or is_failover_reply(result):
                self.suspect = True
                raise ShardUnavailable(
                    f"redis shard {self.index} ({self.name}) is unavailable: {result}"
                )
            raise result
        return result

    async def blpop(self, keys: Sequence[str], timeout: float) -> tuple[bytes, bytes] | None:
        async with self.guard("a blocking receive"):
            try:
                got = await self.client.blpop(list(keys), timeout=timeout)
            except redis_errors.ConnectionError:
                # A restarted server leaves the pool's idle connections dead, and the hot
                # path (its own connection) may have noticed first: drop them, retry once.
                # Safe for at-most-once: a pop lost with its connection is not repeated.
                await self.pool.disconnect(inuse_connections=False)
                got = await self.client.blpop(list(keys), timeout=timeout)
        # The client does not decode responses: the key and the item are bytes.
        return cast("tuple[bytes, bytes] | None", got)

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        await self.wire.close()
        with contextlib.suppress(Exception):
            await self.client.aclose()
        with contextlib.suppress(Exception):
            await self.pool.disconnect()


def open_shards(
    hosts: Sequence[str] | None,
    *,
    password: str | None = None,
    max_connections: int = 64,
    ssl_options: dict[str, Any] | None = None,
    connect_timeout: float = 2.0,
    socket_timeout: float = 10.0,
) -> list[Shard]:
    """One :class:`Shard` per URL, in order (their index is their place on the hash ring);
    a local Redis when ``hosts`` is empty."""
    if isinstance(hosts, str):  # would be taken as a list of one-character URLs
        raise TypeError("hosts must be a list of URLs, not a string")
    return [
        Shard(
            i,
            url,
            password=password,
            max_connections=max_connections,
            ssl_options=ssl_options,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
        )
        for i, url in enumerate(hosts or ["redis://127.0.0.1:6379/0"])
    ]


def _messages_carried(command: tuple[Any, ...]) -> int:
    """Messages one script call carries: a folded batch of sends (``send_batch``: keys are
    the three counters' then one list per message) carries one per list; any other one."""
    if command[1] in (SCRIPTS["send_batch"][1], SCRIPTS["send_batch+receipt"][1]):
        return max(1, int(command[2]) - 3)
    return 1


class SendBatcher:
    """Coalesces the sends issued while a round trip is in flight into the next pipeline.

    The first send goes out at once; those that arrive meanwhile share one
    round trip, so throughput grows with concurrency without adding latency.
    """

    def __init__(self, shard: Shard, max_batch: int = 512) -> None:
        self.shard = shard
        self.max_batch = max_batch
        self._pending: list[tuple[str, Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, script: str, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((script, keys, args, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())
        return fut

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            calls, slots = self._coalesce(batch)
            try:
                results = await self.shard.eval_many(calls)
            except Exception as exc:  # the whole round trip failed: every caller hears it
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (call, sub), (*_, fut) in zip(slots, batch, strict=True):
                if fut.done():
                    continue
                result = results[call]
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result if sub is None else result[sub])

    @staticmethod
    def _coalesce(
        batch: Sequence[tuple[str, Sequence[Any], Sequence[Any], asyncio.Future[Any]]],
    ) -> tuple[list[tuple[str, list[Any], list[Any]]], list[tuple[int, int | None]]]:
        """Fold the batch's single sends into one ``send_batch`` script call.

        One EVALSHA for N messages instead of N: the per-command cost in the client
        and the server is what bounds a pipeline. Order within a channel is kept.
        Returns the calls and, per batch entry, (call index, position in its result).
        """
        calls: list[tuple[str, list[Any], list[Any]]] = []
        slots: list[tuple[int, int | None]] = []
        folded: dict[tuple[Any, ...], int] = {}
        for script, keys, args, _ in batch:
            if script != "send":
                slots.append((len(calls), None))
                calls.append((script, list(keys), list(args)))
                continue
            # keys: list, sent, full, registry; args: item, capacity, expiry, name
            group = (*keys[1:4], args[2])
            index = folded.get(group)
            if index is None:
                index = folded[group] = len(calls)
                calls.append(("send_batch", list(keys[1:4]), [args[2]]))
            _, call_keys, call_args = calls[index]
            call_keys.append(keys[0])
            call_args.extend((args[0], args[1], args[3]))
            slots.append((index, len(call_keys) - 4))
        return calls, slots
