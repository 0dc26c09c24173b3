"""The Redis channel layer, sharded over 1..N independent Redis servers.

Layout on each shard (``P`` is the key prefix):

- ``P:ch:<name>``: a list per channel; items are ``header + msgpack body`` (see
  serializers). Every reply channel of one process (``prefix!*``) shares the list
  ``P:ch:prefix!`` so the process reads all of them with one blocking pop and
  sorts them out locally.
- ``P:sent`` / ``P:full``: hashes of per-channel counters (statistics).
- ``P:channels``: the set of channel names seen, so global statistics need no SCAN.
- ``P:group:<name>``: a sorted set of member channels scored by the time they joined.
- ``P:workers`` (on one shard): each worker's last load report, with an expiry on the
  server's clock, for the autoscaler.
- ``P:session:<socket>``, ``P:order:<socket>``, ``P:parked:<socket>``: the session and
  ordering stores' keys, sealed (msgpack, encrypted with the layer's keys) like messages.

Key names, shards and stored encoding come from one :class:`KeySpace` (``self.keys``).

Popped messages that the caller has not taken yet (a blocking pop that returns
after its caller moved on, a batch larger than asked, replies for other
reply channels of the process) wait in a local *stash*; ``close()`` pushes
what is left back to the head of its list, so a worker that stops loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from channelapp.layer.base import (
    BaseChannelLayer,
    ChannelFull,
    ChannelLayerError,
    ChannelStatistics,
    Message,
    ShardUnavailable,
    WorkerReport,
)
from channelapp.layer.capacity import CapacityPolicy
from channelapp.layer.keyspace import DEFAULT_PREFIX, KeySpace
from channelapp.layer.names import (
    is_process_specific,
    non_local_name,
    validate_channel_name,
    validate_group_name,
)
from channelapp.layer.serializers import MessageCorrupt, Serializer, enqueued_at, frame, unframe
from channelapp.layer.shard import SendBatcher, Shard
from channelapp.layer.stats import LoadReading, empty_stats, live_reports, total

log = logging.getLogger("channelapp.layer")

BLOCK_SECONDS = 1.0  # longest single blocking pop; bounds shutdown and cancellation delays
# Most messages one receive() fetches for the receivers waiting on its channel.
RECEIVE_PREFETCH_MAX = 64
# Most replies one pop takes from a process's reply list.
REPLY_BATCH = 256
# The name whose shard keeps the workers' load reports (``P:workers``).
WORKERS_REGISTRY = "workers"


class RedisChannelLayer(BaseChannelLayer):
    def __init__(
        self,
        hosts: Sequence[str] | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        capacity: int = 100,
        channel_capacity: Mapping[str, int] | None = None,
        reply_capacity: int = 100_000,
        expiry: float = 60,
        group_expiry: float = 86400,
        password: str | None = None,
        encryption_keys: Sequence[str | bytes] | None = None,
        max_message_size: int = 1 << 20,
        max_connections: int = 64,
        ssl_options: dict[str, Any] | None = None,
        connect_timeout: float = 2.0,
        socket_timeout: float = 10.0,
    ) -> None:
        if isinstance(hosts, str):  # would be taken as a list of one-character URLs
            raise TypeError("hosts must be a list of URLs, not a string")
        hosts = list(hosts or ["redis://127.0.0.1:6379/0"])
        self.capacity = CapacityPolicy(capacity, channel_capacity)
        if reply_capacity < 1:
            raise ValueError(f"reply_capacity must be at least 1, got {reply_capacity}")
        self.reply_capacity = reply_capacity
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.shards = [
            Shard(
                i,
                url,
                password=password,
                max_connections=max_connections,
                ssl_options=ssl_options,
                connect_timeout=connect_timeout,
                socket_timeout=socket_timeout,
            )
            for i, url in enumerate(hosts)
        ]
        self._serializer = Serializer(encryption_keys, max_size=max_message_size)
        # Every key name, shard choice and stored encoding (also for sessions and ordering).
        self.keys = KeySpace(prefix, self.shards, self._serializer)
        self.prefix = self.keys.prefix
        self.ring = self.keys.ring
        self._batchers = [SendBatcher(s) for s in self.shards]
        self._expiry_s = max(1, int(expiry))
        self._process = secrets.token_hex(6)
        # Popped, not yet taken: channel name -> (enqueued_at, body, storage key, raw item).
        self._stash: defaultdict[str, deque[tuple[float, bytes, str, bytes]]] = defaultdict(deque)
        self._waiters: set[asyncio.Future[None]] = set()
        self._blocking: dict[tuple[int, tuple[str, ...]], asyncio.Task[None]] = {}
        self._pops: set[asyncio.Task[int]] = set()
        self._closing = False
        # One reader per list that receive() waits on, waking only the receivers it fed.
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._name_waiters: defaultdict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._key_waiting: defaultdict[str, int] = defaultdict(int)  # receive()s per list
        self._key_futures: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._fresh: set[str] = set()  # names deposited since the last wake-up
        self._last_purge = time.monotonic()
        self.group_full_count = 0
        self._marked: set[int] = set()  # shards holding this process's liveness marker

    # --- keys -----------------------------------------------------------------------------

    def _key(self, channel: str) -> str:
        return self.keys.channel(channel)

    def _counter_name(self, channel: str) -> str:
        return non_local_name(channel)

    def _meta_keys(self) -> tuple[str, str, str]:
        return self.keys.counters()

    def _list_capacity(self, channel: str) -> int:
        """The bound Redis enforces on the list ``channel`` is stored in.

        Every reply channel of a process shares one list, so a per-channel bound there
        would make one socket's backlog refuse the others' messages. That list gets
        ``reply_capacity`` for all its channels together; each reply channel's own
        ``capacity`` is enforced by its receiver (the protocol server closes a socket
        that falls that far behind).
        """
        return self.reply_capacity if is_process_specific(channel) else self.capacity(channel)

    def _shard(self, name: str) -> Shard:
        return self.keys.shard(name)

    # --- send -----------------------------------------------------------------------------

    def _item(self, channel: str, body: bytes) -> bytes:
        return frame(body, channel if is_process_specific(channel) else "")

    async def send(self, channel: str, message: Message) -> None:
        validate_channel_name(channel)
        body = self._serializer.dumps(message)
        shard_index = self.ring.shard_for(channel)
        sent, full, registry = self._meta_keys()
        ok = await self._batchers[shard_index].submit(
            "send",
            (self._key(channel), sent, full, registry),
            (
                self._item(channel, body),
                self._list_capacity(channel),
                self._expiry_s,
                self._counter_name(channel),
            ),
        )
        if not ok:
            raise ChannelFull(
                f"channel {channel!r} is full ({self._list_capacity(channel)} messages)"
            )

    # --- receive --------------------------------------------------------------------------

    def _wake_named(self) -> None:
        """Wake the receive()s of the names just deposited (not every waiting name)."""
        fresh, self._fresh = self._fresh, set()
        for name in fresh:
            for fut in self._name_waiters.get(name, ()):
                if not fut.done():
                    fut.set_result(None)

    def _wake(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def _deposit(self, key: str, item: bytes, now: float) -> None:
        ts, name, body = unframe(item)
        if now - ts > self.expiry:
            return  # expired while waiting: dropped, as if its key had expired
        if not name:
            name = self.keys.channel_name(key)
        self._stash[name].append((ts, body, key, item))
        self._fresh.add(name)

    def _take(self, channels: Sequence[str], limit: int) -> list[tuple[str, Message]]:
        out: list[tuple[str, Message]] = []
        now = time.time()
        progress = True
        while len(out) < limit and progress:
            progress = False
            for channel in channels:
                queue = self._stash.get(channel)
                while queue:
                    ts, body, _key, _item = queue.popleft()
                    if now - ts > self.expiry:
                        continue
                    try:
                        out.append((channel, self._serializer.loads(body)))
                    except MessageCorrupt as exc:
                        log.error("dropping undecodable message on %r: %s", channel, exc)
                        continue
                    progress = True
                    break
                if queue is not None and not queue:
                    self._stash.pop(channel, None)
                if len(out) >= limit:
                    break
        self._purge_stash(now)
        return out

    def _purge_stash(self, now: float) -> None:
        """Drop expired replies for reply channels nobody receives on (no unbounded growth)."""
        if time.monotonic() - self._last_purge < 5:
            return
        self._last_purge = time.monotonic()
        for name in list(self._stash):
            queue = self._stash[name]
            while queue and now - queue[0][0] > self.expiry:
                queue.popleft()
            if not queue:
                del self._stash[name]

    def _keys_by_shard(self, channels: Sequence[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = defaultdict(list)
        for channel in channels:
            key = self._key(channel)
            keys = out[self.ring.shard_for(channel)]
            if key not in keys:
                keys.append(key)
        return out

    def _start_pop(self, index: int, keys: Sequence[str], count: int) -> asyncio.Task[int]:
        """A non-blocking batch pop whose messages reach the stash even if its caller is cancelled.

        Callers await it shielded: a cancelled receive must not drop what Redis
        already handed over (close() returns the stash to Redis).
        """

        async def pop() -> int:
            flat = await self.shards[index].eval("pop_many", keys, (count,))
            now = time.time()
            for i in range(0, len(flat), 2):
                self._deposit(keys[int(flat[i]) - 1], flat[i + 1], now)
            self._wake_named()
            return len(flat) // 2

        task = asyncio.get_running_loop().create_task(pop())
        self._pops.add(task)
        task.add_done_callback(self._pops.discard)
        return task

    async def _pop_now(self, by_shard: dict[int, list[str]], limit: int) -> None:
        """One non-blocking batch pop per shard, concurrently; results go to the stash."""
        per_shard = max(1, limit // max(1, len(by_shard)))
        tasks = [self._start_pop(i, k, per_shard) for i, k in by_shard.items()]
        results = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    def _start_blocking(self, index: int, keys: list[str]) -> asyncio.Task[None]:
        """A blocking pop that deposits into the stash whenever it returns, even if nobody waits."""
        ident = (index, tuple(keys))
        task = self._blocking.get(ident)
        if task is not None and not task.done():
            return task

        async def block() -> None:
            try:
                got = await self.shards[index].blpop(keys, BLOCK_SECONDS)
            finally:
                self._blocking.pop(ident, None)
            if got:
                key, item = got
                self._deposit(key.decode() if isinstance(key, bytes) else key, item, time.time())
                self._wake()
                self._wake_named()

        task = asyncio.get_running_loop().create_task(block())
        self._blocking[ident] = task
        return task

    async def _wait(self, tasks: list[asyncio.Task[None]], timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            # Waiting is cancellable; the blocking pops are not cancelled (they would lose data).
            await asyncio.wait([*tasks, fut], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiters.discard(fut)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def receive_many(
        self,
        channels: Iterable[str],
        max_messages: int = 100,
        timeout: float | None = None,
    ) -> list[tuple[str, Message]]:
        names = [validate_channel_name(c, receive=True) for c in channels]
        if not names:
            raise ValueError("receive_many needs at least one channel")
        by_shard = self._keys_by_shard(names)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closing:
                raise ChannelLayerError("the channel layer is closing")
            out = self._take(names, max_messages)
            if len(out) < max_messages:
                await self._pop_now(by_shard, max_messages - len(out))
                out += self._take(names, max_messages - len(out))
            if out:
                return out
            remaining = BLOCK_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return []
            tasks = [self._start_blocking(i, keys) for i, keys in by_shard.items()]
            await self._wait(tasks, min(remaining, BLOCK_SECONDS + 1))

    async def receive(self, channel: str) -> Message:
        """One message of ``channel``.

        Concurrent receivers of one channel share one reader task: each of its pops
        fetches as many messages as receivers are waiting (at most
        ``RECEIVE_PREFETCH_MAX``), so N receivers cost one round trip, not N. Every
        reply channel of this process (``prefix!*``) shares the reader of its list.
        """
        validate_channel_name(channel, receive=True)
        key = self._key(channel)
        while True:
            got = self._take([channel], 1)
            if got:
                return got[0][1]
            if self._closing:
                raise ChannelLayerError("the channel layer is closing")
            reader = self._readers.get(key)
            if reader is None or reader.done():
                if reader is not None and reader.done() and not reader.cancelled():
                    reader.exception()
                reader = asyncio.get_running_loop().create_task(self._read(channel, key))
                reader.add_done_callback(functools.partial(self._reader_done, key))
                self._readers[key] = reader
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._name_waiters[channel].append(fut)
            self._key_futures[key].add(fut)
            self._key_waiting[key] += 1
            try:
                # Woken by a deposit for this name or by the reader ending (one callback on
                # the reader for all its receivers: thousands of sockets wait on one list).
                await fut
            finally:
                self._key_waiting[key] -= 1
                if not self._key_waiting[key]:
                    del self._key_waiting[key]
                futures = self._key_futures.get(key)
                if futures is not None:
                    futures.discard(fut)
                    if not futures:
                        del self._key_futures[key]
                waiters = self._name_waiters.get(channel)
                if waiters is not None:
                    with contextlib.suppress(ValueError):
                        waiters.remove(fut)
                    if not waiters:
                        del self._name_waiters[channel]
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]

    def _reader_done(self, key: str, task: asyncio.Task[None]) -> None:
        # Forgotten once done: every request body has a list of its own, so a worker would
        # otherwise keep one finished reader per streamed request it ever received.
        if self._readers.get(key) is task:
            del self._readers[key]
        if not task.cancelled():
            task.exception()  # its receivers raise it; retrieved here if none are left
        self._wake_key(key)

    def _wake_key(self, key: str) -> None:
        """The reader of ``key`` ended (nobody left to feed, an error, closing)."""
        for fut in self._key_futures.get(key, ()):
            if not fut.done():
                fut.set_result(None)

    def _waiting(self, channel: str, key: str) -> int:
        """How many receive()s the reader of ``key`` still has to feed.

        A channel's own list: its receivers less what the stash already holds for
        them, so the reader never pops more than is asked for. A reply list: every
        receiver of the process's reply channels; popping a little ahead there is
        harmless, as every reply in it is for this process.
        """
        waiting = self._key_waiting.get(key, 0)
        if is_process_specific(channel):
            return waiting
        return waiting - len(self._stash.get(channel, ()))

    async def _read(self, channel: str, key: str) -> None:
        """Pop the list of ``channel`` while anyone waits on it; deposits wake the addressees."""
        shard_index = self.ring.shard_for(channel)
        replies = is_process_specific(channel)
        while (waiting := self._waiting(channel, key)) > 0 and not self._closing:
            # A reply list holds the replies of every socket of this process: take many.
            count = REPLY_BATCH if replies else min(RECEIVE_PREFETCH_MAX, waiting)
            # Shielded: cancelling the reader must not cancel a pop that may hold messages.
            if not await asyncio.shield(self._start_pop(shard_index, (key,), count)):
                await asyncio.shield(self._start_blocking(shard_index, [key]))

    async def new_channel(self, prefix: str = "specific") -> str:
        return validate_channel_name(f"{prefix}.{self._process}!{secrets.token_hex(8)}")

    # --- groups ---------------------------------------------------------------------------

    def _group_key(self, group: str) -> str:
        return self.keys.group(group)

    async def group_add(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        shard = self._shard(group)
        key = self._group_key(group)
        async with shard.guard("group_add"):
            pipe = shard.client.pipeline(transaction=False)
            pipe.zadd(key, {channel: time.time()})
            pipe.expire(key, int(self.group_expiry))
            await pipe.execute()

    async def group_discard(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        shard = self._shard(group)
        async with shard.guard("group_discard"):
            await shard.client.zrem(self._group_key(group), channel)

    async def group_members(self, group: str) -> list[str]:
        validate_group_name(group)
        members = await self._shard(group).eval(
            "group_members", (self._group_key(group),), (time.time() - self.group_expiry,)
        )
        return [m.decode() if isinstance(m, bytes) else m for m in members]

    async def group_send(self, group: str, message: Message) -> int:
        """Send to every member: one script call per shard, all shards at once.

        A full member does not stop delivery to the others; the count of full
        members is returned, added to ``group_full_count`` and logged.
        """
        body = self._serializer.dumps(message)
        members = await self.group_members(group)
        if not members:
            return 0
        sent, full, registry = self._meta_keys()
        per_shard: dict[int, tuple[list[str], list[Any]]] = {}
        for channel in members:
            keys, args = per_shard.setdefault(
                self.ring.shard_for(channel), ([sent, full, registry], [self._expiry_s])
            )
            keys.append(self._key(channel))
            args += [
                self._item(channel, body),
                self._list_capacity(channel),
                self._counter_name(channel),
            ]
        results = await asyncio.gather(
            *(self.shards[i].eval("send_many", k, a) for i, (k, a) in per_shard.items()),
            return_exceptions=True,
        )
        full_members: list[str] = []
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                failure = result
            else:
                full_members += [m.decode() if isinstance(m, bytes) else m for m in result]
        if full_members:
            self.group_full_count += len(full_members)
            log.warning(
                "group_send to %r: %d of %d member channel(s) full, message not queued for them: %s",
                group,
                len(full_members),
                len(members),
                full_members[:5],
            )
        if failure is not None:
            raise failure
        return len(full_members)

    # --- statistics -----------------------------------------------------------------------

    async def channel_statistics(self, channel: str) -> ChannelStatistics:
        return (await self.channels_statistics([channel]))[channel]

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

    def _workers_key(self) -> str:
        return self.keys.key("workers")

    def _workers_shard(self) -> Shard:
        return self._shard(WORKERS_REGISTRY)

    async def report_worker(self, worker: str, report: WorkerReport, ttl: float) -> None:
        state = (
            f"{int(report['in_flight'])} {int(report['handled'])} "
            f"{float(report['busy_seconds']):.6f} {int(report['concurrency'])}"
        )
        ttl_ms = max(1, int(ttl * 1000))
        await self._workers_shard().eval(
            "worker_beat",
            (self._workers_key(), self.keys.key("workers", "swept")),
            (worker, ttl_ms, state),
        )

    async def forget_worker(self, worker: str) -> None:
        await self._workers_shard().execute("HDEL", self._workers_key(), worker)

    async def _statistics(
        self, channels: Iterable[str], *, every_shard: bool, workers: bool = False
    ) -> tuple[dict[str, ChannelStatistics], list[ShardUnavailable], dict[str, WorkerReport]]:
        names = [validate_channel_name(c, receive=True) for c in channels]
        by_shard: dict[int, list[str]] = defaultdict(list)
        if every_shard:
            for shard in self.shards:
                by_shard[shard.index] = []
        for name in names:
            by_shard[self.ring.shard_for(name)].append(name)
        workers_at = self._workers_shard().index if workers else -1
        if workers:
            by_shard.setdefault(workers_at, [])
        sent, full, _ = self._meta_keys()
        out: dict[str, ChannelStatistics] = {}
        reports: dict[str, WorkerReport] = {}

        async def one(index: int, shard_names: list[str]) -> None:
            shard = self.shards[index]
            counters = [self._counter_name(n) for n in shard_names]
            async with shard.guard("statistics"):
                pipe = shard.client.pipeline(transaction=False)
                for name in shard_names:
                    pipe.llen(self._key(name))
                    pipe.lindex(self._key(name), 0)
                if shard_names:
                    pipe.hmget(sent, counters)
                    pipe.hmget(full, counters)
                if index == workers_at:
                    pipe.time()
                    pipe.hgetall(self._workers_key())
                if not shard_names and index != workers_at:
                    pipe.ping()
                replies = await pipe.execute()
            if index == workers_at:
                reports.update(live_reports(replies[-2], replies[-1]))
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
        sent, full, registry = self._meta_keys()

        async def one(shard: Shard) -> ChannelStatistics:
            flat = await shard.eval(
                "stats_all", (registry, sent, full), (self.keys.channel_key_start,)
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

        return list(await asyncio.gather(*(one(s) for s in self.shards)))

    async def global_statistics(self) -> ChannelStatistics:
        return total(await self.shard_statistics())

    async def unavailable(self) -> list[str]:
        """One PING per shard, all at once: the shards that did not answer, with why."""

        async def one(shard: Shard) -> str | None:
            try:
                await shard.execute("PING")
            except ShardUnavailable as exc:
                return str(exc)
            return None

        results = await asyncio.gather(*(one(s) for s in self.shards))
        return [r for r in results if r is not None]

    # --- lost state ---------------------------------------------------------------------

    async def take_lost_replies(self, prefix: str) -> list[str]:
        """This process's reply channels ``prefix.<process>!*`` that lost a message since the
        last call because the process's shared reply list held ``reply_capacity`` messages.
        """
        name = f"{prefix}.{self._process}!"
        lost = await self._shard(name).execute("SPOP", f"{self._key(name)}:lost", 100_000)
        return [m.decode() if isinstance(m, bytes) else m for m in lost or ()]

    async def shards_that_lost_state(self, ttl: int = 3600) -> list[int]:
        """Shards that lost what they held since the last call (restarted empty, flushed).

        Each call refreshes a marker key of this process on every shard; a shard where
        the marker set by an earlier call is gone has lost its group memberships,
        sessions and ordering keys with it. Shards that cannot be reached are skipped
        and checked again on the next call.
        """
        key = self.keys.key("alive", self._process)

        async def one(shard: Shard) -> bool:
            # Two commands, not SET ... GET: that needs Redis 6.2. Only this process writes it.
            old = await shard.execute("GET", key)
            await shard.execute("SET", key, "1", "EX", ttl)
            lost = shard.index in self._marked and old is None
            self._marked.add(shard.index)
            return lost

        results = await asyncio.gather(*(one(s) for s in self.shards), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ShardUnavailable):
                raise result
        return [s.index for s, lost in zip(self.shards, results, strict=True) if lost is True]

    # --- lifecycle ------------------------------------------------------------------------

    async def flush(self) -> None:
        self._stash.clear()
        for shard in self.shards:
            async with shard.guard("flush"):
                keys = [
                    k async for k in shard.client.scan_iter(match=self.keys.pattern(), count=1000)
                ]
                for i in range(0, len(keys), 500):
                    await shard.client.unlink(*keys[i : i + 500])

    async def _return_stash(self) -> None:
        """Push popped-but-untaken messages back to the head of their lists, oldest first."""
        by_key: dict[str, list[bytes]] = defaultdict(list)
        for queue in self._stash.values():
            for _ts, _body, key, item in queue:
                by_key[key].append(item)
        self._stash.clear()
        for key, items in by_key.items():
            channel = self.keys.channel_name(key)
            with contextlib.suppress(ShardUnavailable):
                shard = self._shard(channel)
                async with shard.guard("returning unreceived messages"):
                    await shard.client.lpush(key, *reversed(items))
            log.info("returned %d unreceived message(s) to %s", len(items), channel)

    async def close(self) -> None:
        """Stop receiving, hand popped-but-untaken messages back to Redis, close connections.

        Receivers still waiting get ``ChannelLayerError``; pops in flight are awaited,
        not cancelled, so what they bring back is returned too. The layer may be used
        again afterwards (connections reopen on demand).
        """
        self._closing = True
        try:
            for waiters in self._name_waiters.values():
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
            self._wake()
            readers = [t for t in self._readers.values() if not t.done()]
            if readers:  # they stop at their next turn (within one blocking pop)
                await asyncio.wait(readers, timeout=BLOCK_SECONDS + 2)
            for reader in self._readers.values():
                reader.cancel()  # still running: stuck on an unreachable shard
            await asyncio.gather(*self._readers.values(), return_exceptions=True)
            self._readers.clear()
            pending = [t for t in (*self._blocking.values(), *self._pops) if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=BLOCK_SECONDS + 2)
            for task in pending:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved, so no "never retrieved" warning
            await self._return_stash()
            for shard in self.shards:
                await shard.close()
        finally:
            self._closing = False
