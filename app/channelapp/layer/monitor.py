"""The Redis layer's admin plane: what waits where, who is working, what was lost.

Statistics and the autoscaler's load read, the workers' load reports, the protocol
servers' heartbeats and the sweep after dead ones, the lost-state checks (a marker key
per shard, the set of reply channels that lost a message) and the key space the session
and ordering stores share. None of it receives: a :class:`RedisChannelLayer` has one
over its own shards (``layer.monitor()``), and the operator builds a :class:`RedisMonitor`
of its own to read load without any receive machinery.

Callers outside the layer see it as a :class:`LayerMonitor`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from channelapp.layer.common import ChannelStatistics, ShardUnavailable, WorkerReport
from channelapp.layer.keyspace import DEFAULT_PREFIX, KeySpace
from channelapp.layer.names import non_local_name, validate_channel_name
from channelapp.layer.serializers import Serializer, enqueued_at
from channelapp.layer.shard import Shard
from channelapp.layer.stats import LoadReading, empty_stats, live_reports, total

log = logging.getLogger("channelapp.layer")

# The name whose shard keeps the workers' load reports (``P:workers``).
WORKERS_REGISTRY = "workers"
# The name whose shard keeps the protocol servers' heartbeats (``P:servers``).
SERVERS_REGISTRY = "servers"
# A sweep of dead protocol servers: how long its claim holds (seconds), the longest gap between
# two sweeps (on the registry shard's clock) read as that clock running on, and how many groups
# one script call goes through.
SWEEP_LEASE = 300.0
SWEEP_MAX_GAP = 2.0
SWEEP_GROUPS_PER_CALL = 100

# A shard pool's connection class and options: what a process needs to open its own
# connections to that shard (another thread's event loop cannot share the pool).
ConnectionOptions = tuple[type, dict[str, Any]]


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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LayerMonitor(Protocol):
    """What a layer with state outside its process offers besides sending and receiving."""

    @property
    def keys(self) -> KeySpace:
        """Key names, shards and encoding of the app's data (sessions and ordering too)."""
        ...

    @property
    def reply_capacity(self) -> int | None:
        """The bound of one process's shared reply list (None: each channel's capacity)."""
        ...

    async def channels_statistics(
        self, channels: Iterable[str]
    ) -> dict[str, ChannelStatistics]: ...

    async def statistics_and_health(
        self, channels: Iterable[str]
    ) -> tuple[dict[str, ChannelStatistics], list[ShardUnavailable]]: ...

    async def load(self, channels: Iterable[str], *, workers: bool = True) -> LoadReading: ...

    async def shard_statistics(self) -> list[ChannelStatistics]: ...

    async def global_statistics(self) -> ChannelStatistics: ...

    async def unavailable(self) -> list[str]: ...

    async def report_worker(self, worker: str, report: WorkerReport, ttl: float) -> None: ...

    async def forget_worker(self, worker: str) -> None: ...

    async def server_beat(self, ttl: float) -> bool: ...

    async def forget_server(self) -> None: ...

    async def sweep_dead_servers(
        self, *, max_gap: float = SWEEP_MAX_GAP, lease: float = SWEEP_LEASE
    ) -> list[str]: ...

    async def take_lost_replies(self, prefix: str) -> list[str]: ...

    async def shards_that_lost_state(self, ttl: int = 3600) -> list[int]: ...

    def state_unchecked(self) -> bool: ...

    def every_shard(self) -> Sequence[Shard]:
        """Every shard in ring order (for a pass over all of the app's keys)."""
        ...

    def connection_options(self) -> list[ConnectionOptions]:
        """Each shard's connection class and options, in ring order."""
        ...


class RedisMonitor:
    """The admin plane over a sharded Redis: reads and registry writes, no receiving.

    ``RedisMonitor(urls, prefix=..., password=...)`` opens connections of its own (closed
    by :meth:`close`); a layer's monitor shares the layer's shards (see :meth:`over`).
    """

    def __init__(
        self,
        hosts: Sequence[str] | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        password: str | None = None,
        max_connections: int = 4,
        ssl_options: dict[str, Any] | None = None,
        connect_timeout: float = 2.0,
        socket_timeout: float = 10.0,
        expiry: float = 60,
        group_expiry: float = 86400,
    ) -> None:
        shards = open_shards(
            hosts,
            password=password,
            max_connections=max_connections,
            ssl_options=ssl_options,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
        )
        self._setup(
            KeySpace(prefix, shards, Serializer()),
            expiry=expiry,
            group_expiry=group_expiry,
            reply_capacity=None,
            process=None,
            owns_shards=True,
        )

    @classmethod
    def over(
        cls,
        keys: KeySpace,
        *,
        expiry: float,
        group_expiry: float,
        reply_capacity: int | None,
        process: str | None,
    ) -> RedisMonitor:
        """The monitor of a layer: its key space and shards, its process name."""
        monitor = cls.__new__(cls)
        monitor._setup(
            keys,
            expiry=expiry,
            group_expiry=group_expiry,
            reply_capacity=reply_capacity,
            process=process,
            owns_shards=False,
        )
        return monitor

    def _setup(
        self,
        keys: KeySpace,
        *,
        expiry: float,
        group_expiry: float,
        reply_capacity: int | None,
        process: str | None,
        owns_shards: bool,
    ) -> None:
        self._keys = keys
        self._shards = keys.shards
        self._reply_capacity = reply_capacity
        self._expiry_s = max(1, int(expiry))
        self.group_expiry = group_expiry
        self._owns_shards = owns_shards
        # Names its layer's reply channels; instances given the same one share them. A
        # server swept as dead while alive goes on under a new one (see server_beat()).
        self.process = process or secrets.token_hex(6)
        self.processes = {self.process}  # every name it had: its older sockets keep theirs
        # Names its marker of the shards' state (shards_that_lost_state()); never changes.
        self._marker = self.process
        self._marked: set[int] = set()  # shards holding this process's liveness marker
        self._beating = False  # server_beat() has registered this process

    @property
    def keys(self) -> KeySpace:
        return self._keys

    @property
    def reply_capacity(self) -> int | None:
        return self._reply_capacity

    def every_shard(self) -> Sequence[Shard]:
        return self._shards

    def connection_options(self) -> list[ConnectionOptions]:
        return [(s.pool.connection_class, dict(s.pool.connection_kwargs)) for s in self._shards]

    # --- statistics -----------------------------------------------------------------------

    async def channels_statistics(self, channels: Iterable[str]) -> dict[str, ChannelStatistics]:
        out, failures, _ = await self._statistics(channels, every_shard=False)
        if failures:
            raise failures[0]
        return out

    async def statistics_and_health(
        self, channels: Iterable[str]
    ) -> tuple[dict[str, ChannelStatistics], list[ShardUnavailable]]:
        """Statistics of ``channels`` and one failure per unreachable shard.

        Every shard is contacted once (shards holding none of the channels get a
        PING), so a caller such as the autoscaler learns the health of all shards
        in the same round trip it reads depth with.
        """
        reading = await self.load(channels, workers=False)
        return reading.channels, reading.failures

    async def load(self, channels: Iterable[str], *, workers: bool = True) -> LoadReading:
        """Everything the autoscaler reads, in one pipelined round trip per shard.

        Per channel: waiting depth, oldest message age and the sent counter (whose
        rate is the arrival rate); per live worker: its last report; per
        unreachable shard: one failure.
        """
        out, failures, reports = await self._statistics(channels, every_shard=True, workers=workers)
        return LoadReading(out, reports, failures)

    async def _statistics(
        self, channels: Iterable[str], *, every_shard: bool, workers: bool = False
    ) -> tuple[dict[str, ChannelStatistics], list[ShardUnavailable], dict[str, WorkerReport]]:
        names = [validate_channel_name(c, receive=True) for c in channels]
        by_shard: dict[int, list[str]] = defaultdict(list)
        if every_shard:
            for shard in self._shards:
                by_shard[shard.index] = []
        for name in names:
            by_shard[self._keys.shard_index(name)].append(name)
        workers_at = self._workers_shard().index if workers else -1
        if workers:
            by_shard.setdefault(workers_at, [])
        sent, full, _ = self._keys.counters()
        out: dict[str, ChannelStatistics] = {}
        reports: dict[str, WorkerReport] = {}

        async def one(index: int, shard_names: list[str]) -> None:
            shard = self._shards[index]
            keys = [self._keys.channel(name) for name in shard_names]
            if shard_names:
                keys += [sent, full]
            with_workers = index == workers_at
            if with_workers:
                keys.append(self._workers_key())
            counters = [non_local_name(n) for n in shard_names]
            replies = await shard.eval(
                "load", keys, [len(shard_names), int(with_workers), *counters]
            )
            if with_workers:
                flat = replies[-1]  # HGETALL's field, value, field, value ...
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                reports.update(live_reports(replies[-2], fields))
            if not shard_names:
                return
            now = time.time()
            base = 2 * len(shard_names)
            sent_counts, full_counts = replies[base], replies[base + 1]
            for i, name in enumerate(shard_names):
                stats = empty_stats()
                stats["messages_pending"] = int(replies[2 * i])
                head = replies[2 * i + 1]
                stats["messages_max_age"] = max(0.0, now - enqueued_at(head)) if head else 0.0
                stats["messages_count"] = int(sent_counts[i] or 0)
                stats["channel_full_count"] = int(full_counts[i] or 0)
                out[name] = stats

        results = await asyncio.gather(
            *(one(i, n) for i, n in by_shard.items()), return_exceptions=True
        )
        failures: list[ShardUnavailable] = []
        for result in results:
            if isinstance(result, ShardUnavailable):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
        return out, failures, reports

    async def shard_statistics(self) -> list[ChannelStatistics]:
        """Totals per shard (one script call each), in shard order."""
        sent, full, registry = self._keys.counters()

        async def one(shard: Shard) -> ChannelStatistics:
            flat = await shard.eval(
                "stats_all", (registry, sent, full), (self._keys.channel_key_start,)
            )
            now = time.time()
            items = []
            for i in range(0, len(flat), 5):
                stats = empty_stats()
                stats["messages_pending"] = int(flat[i + 1])
                head = flat[i + 2]
                stats["messages_max_age"] = max(0.0, now - enqueued_at(head)) if head else 0.0
                stats["messages_count"] = int(flat[i + 3])
                stats["channel_full_count"] = int(flat[i + 4])
                items.append(stats)
            return total(items)

        return list(await asyncio.gather(*(one(s) for s in self._shards)))

    async def global_statistics(self) -> ChannelStatistics:
        return total(await self.shard_statistics())

    async def unavailable(self) -> list[str]:
        """One PING per shard, all at once: the shards that did not answer, with why."""

        async def one(shard: Shard) -> str | None:
            try:
                await shard.execute("PING", wait_out_failover=False)
            except ShardUnavailable as exc:
                return str(exc)
            return None

        results = await asyncio.gather(*(one(s) for s in self._shards))
        return [r for r in results if r is not None]

    # --- workers' load reports ------------------------------------------------------------

    def _workers_key(self) -> str:
        return self._keys.key("workers")

    def _workers_shard(self) -> Shard:
        return self._keys.shard(WORKERS_REGISTRY)

    async def report_worker(self, worker: str, report: WorkerReport, ttl: float) -> None:
        state = (
            f"{int(report['in_flight'])} {int(report['handled'])} "
            f"{float(report['busy_seconds']):.6f} {int(report['concurrency'])}"
        )
        ttl_ms = max(1, int(ttl * 1000))
        await self._workers_shard().eval(
            "worker_beat",
            (self._workers_key(), self._keys.key("workers", "swept")),
            (worker, ttl_ms, state),
        )

    async def forget_worker(self, worker: str) -> None:
        await self._workers_shard().execute("HDEL", self._workers_key(), worker)

    # --- protocol servers' heartbeats -----------------------------------------------------

    async def server_beat(self, ttl: float) -> bool:
        """Register this process as a live protocol server for ``ttl`` seconds. True when it
        had been swept as dead meanwhile (its sockets were taken out of their groups: they
        must reconnect); not when the registry was lost with a restarted shard.

        Once swept, the process goes on under a new name: the reply channels it makes from
        then on are out of reach of a sweep of the old name that may still be running.
        """
        registry = self._keys.shard(SERVERS_REGISTRY)
        swept = await registry.eval(
            "server_beat",
            (self._keys.key("servers"), self._keys.key("server-swept", self.process)),
            (self.process, max(1, int(ttl * 1000))),
        )
        if swept:
            self.process = secrets.token_hex(6)
            self.processes.add(self.process)
            await registry.eval(
                "server_beat",
                (self._keys.key("servers"), self._keys.key("server-swept", self.process)),
                (self.process, max(1, int(ttl * 1000))),
            )
        self._beating = True
        return bool(swept)

    async def forget_server(self) -> None:
        """Leave the registry (a server that stops normally needs no sweeping)."""
        if self._beating:
            await self._keys.shard(SERVERS_REGISTRY).execute(
                "ZREM", self._keys.key("servers"), self.process
            )
            self._beating = False

    async def sweep_dead_servers(
        self, *, max_gap: float = SWEEP_MAX_GAP, lease: float = SWEEP_LEASE
    ) -> list[str]:
        """Clean up after the protocol servers whose heartbeat expired (killed, partitioned).

        Any live process may call it; each dead server is claimed by one caller at a time,
        which takes its sockets (every reply channel ``name.<process>!...``) out of every
        group, deletes its reply backlog (nobody will read it) and lets its sockets' session
        and ordering keys expire within the message expiry. The claim holds for ``lease``
        seconds and ends once the cleanup is done; a claim whose cleanup failed is claimed
        again when its lease runs out. A call more than ``max_gap`` seconds after the one
        before (on the registry shard's clock: it stalled, failed over, restarted) claims
        nothing and gives every server that much longer. Returns the processes swept.
        """
        registry = self._keys.shard(SERVERS_REGISTRY)
        claims = self._keys.key("servers", "sweeping")
        dead = await registry.eval(
            "servers_dead",
            (self._keys.key("servers"), claims, self._keys.key("servers", "seen")),
            (
                self._keys.key("server-swept", ""),
                max(1, int(self.group_expiry * 1000)),
                max(1, int(lease * 1000)),
                max(1, int(max_gap * 1000)),
            ),
        )
        swept = [_text(process) for process in dead]
        if not swept:
            return swept
        removed = await self._sweep_processes(swept)
        await registry.execute("ZREM", claims, *swept)
        log.warning(
            "protocol server(s) %s stopped beating: %d membership(s) of their sockets removed "
            "from their groups, their replies deleted",
            ", ".join(swept),
            removed,
        )
        return swept

    async def _sweep_processes(self, processes: Sequence[str]) -> int:
        """One pass over this app's keys on every shard for all of ``processes``; the group
        memberships removed."""
        marks = [f".{process}!" for process in processes]
        group_start = self._keys.group("")
        removed = 0
        for shard in self._shards:
            async with shard.guard("sweeping a dead server's keys"):
                groups: list[str] = []
                gone: list[str] = []
                expiring: list[str] = []
                async for raw in shard.client.scan_iter(match=self._keys.pattern(), count=1000):
                    key = _text(raw)
                    if key.startswith(group_start):
                        groups.append(key)
                    elif any(mark in key for mark in marks):
                        # Its reply lists go; its sockets' sessions, ordering counters and
                        # parked messages expire soon.
                        is_list = key.startswith(self._keys.channel_key_start)
                        (gone if is_list else expiring).append(key)
            for start in range(0, len(groups), SWEEP_GROUPS_PER_CALL):
                batch = groups[start : start + SWEEP_GROUPS_PER_CALL]
                removed += int(await shard.eval("group_sweep", batch, marks))
            async with shard.guard("sweeping a dead server's keys"):
                pipe = shard.client.pipeline(transaction=False)
                for key in expiring:
                    pipe.expire(key, self._expiry_s)
                if gone:
                    pipe.unlink(*gone)
                await pipe.execute()
        return removed

    # --- lost state -----------------------------------------------------------------------

    async def take_lost_replies(self, prefix: str) -> list[str]:
        """This process's reply channels ``prefix.<process>!*`` that lost a message since the
        last call because the process's shared reply list held ``reply_capacity`` messages.
        """
        name = f"{prefix}.{self.process}!"
        lost = await self._keys.shard(name).execute(
            "SPOP", f"{self._keys.channel(name)}:lost", 100_000
        )
        return [m.decode() if isinstance(m, bytes) else m for m in lost or ()]

    async def shards_that_lost_state(self, ttl: int = 3600) -> list[int]:
        """Shards that lost what they held since the last call (restarted empty, flushed).

        Each call refreshes a marker key of this process on every shard; a shard where
        the marker set by an earlier call is gone has lost its group memberships,
        sessions and ordering keys with it. Shards that cannot be reached are skipped
        and checked again on the next call.
        """
        key = self._keys.key("alive", self._marker)

        async def one(shard: Shard) -> bool:
            # Two commands, not SET ... GET: that needs Redis 6.2. Only this process writes it.
            suspect, shard.suspect = shard.suspect, False
            try:
                old = await shard.execute("GET", key)
                await shard.execute("SET", key, "1", "EX", ttl)
            except BaseException:
                shard.suspect = shard.suspect or suspect
                raise
            lost = shard.index in self._marked and old is None
            self._marked.add(shard.index)
            return lost

        results = await asyncio.gather(*(one(s) for s in self._shards), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ShardUnavailable):
                raise result
        return [s.index for s, lost in zip(self._shards, results, strict=True) if lost is True]

    def state_unchecked(self) -> bool:
        """A shard failed or dropped a connection since shards_that_lost_state() last read it
        (it may have restarted empty)."""
        return any(shard.suspect for shard in self._shards)

    # --- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connections this monitor opened (a layer's monitor leaves them to it)."""
        if self._owns_shards:
            for shard in self._shards:
                await shard.close()
