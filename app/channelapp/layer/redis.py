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
- ``P:blob:<token>``: the body of a message larger than ``inline_message_size``, on the
  shard of its channel; the channel's list holds a small reference to it.
- ``P:servers`` (on one shard): the protocol servers' heartbeats, ``P:servers:sweeping``
  the dead ones being swept (with the claim's lease), ``P:servers:seen`` when the last
  sweep looked; ``P:server-swept:<process>`` the mark of one swept as dead (see
  ``sweep_dead_servers``).

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
from collections.abc import Callable, Iterable, Sequence
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
from channelapp.layer.capacity import CapacityOverrides, CapacityPolicy
from channelapp.layer.keyspace import DEFAULT_PREFIX, KeySpace
from channelapp.layer.names import (
    InvalidChannelName,
    is_process_specific,
    non_local_name,
    validate_channel_name,
    validate_group_name,
)
from channelapp.layer.serializers import (
    MAX_MESSAGE_SIZE,
    MessageCorrupt,
    Serializer,
    enqueued_at,
    frame,
    unframe,
)
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
# The name whose shard keeps the protocol servers' heartbeats (``P:servers``).
SERVERS_REGISTRY = "servers"
# A serialized message larger than this is stored out of line: its body under a key of its
# own (``P:blob:<token>``) on the shard of the channel, the channel's list carrying a small
# reference ``{OUT_OF_LINE: [token, read once]}`` that receive() replaces by the message.
INLINE_MESSAGE_SIZE = 1 << 20
OUT_OF_LINE = "__channelapp_out_of_line__"
# A sweep of dead protocol servers: how long its claim holds (seconds), the longest gap between
# two sweeps (on the registry shard's clock) read as that clock running on, and how many groups
# one script call goes through.
SWEEP_LEASE = 300.0
SWEEP_MAX_GAP = 2.0
SWEEP_GROUPS_PER_CALL = 100


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _log_group_full(group: str, full_members: list[str], members: int) -> None:
    log.warning(
        "group_send to %r: %d of %d member channel(s) full, message not queued for them: %s",
        group,
        len(full_members),
        members,
        full_members[:5],
    )


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class RedisChannelLayer(BaseChannelLayer):
    def __init__(
        self,
        hosts: Sequence[str] | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        capacity: int = 100,
        channel_capacity: CapacityOverrides | None = None,
        reply_capacity: int | None = 100_000,
        expiry: float = 60,
        group_expiry: float = 86400,
        password: str | None = None,
        encryption_keys: Sequence[str | bytes] | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        inline_message_size: int = INLINE_MESSAGE_SIZE,
        max_connections: int = 64,
        ssl_options: dict[str, Any] | None = None,
        connect_timeout: float = 2.0,
        socket_timeout: float = 10.0,
        process: str | None = None,
    ) -> None:
        if isinstance(hosts, str):  # would be taken as a list of one-character URLs
            raise TypeError("hosts must be a list of URLs, not a string")
        hosts = list(hosts or ["redis://127.0.0.1:6379/0"])
        self.capacity = CapacityPolicy(capacity, channel_capacity)
        if reply_capacity is not None and reply_capacity < 1:
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
        self.inline_message_size = inline_message_size
        # Every key name, shard choice and stored encoding (also for sessions and ordering).
        self.keys = KeySpace(prefix, self.shards, self._serializer)
        self.prefix = self.keys.prefix
        self.ring = self.keys.ring
        self._batchers = [SendBatcher(s) for s in self.shards]
        self._expiry_s = max(1, int(expiry))
        # Names this instance's reply channels; instances given the same one share them. A
        # server swept as dead while alive goes on under a new one (see server_beat()).
        self._process = process or secrets.token_hex(6)
        self._processes = {self._process}  # every name it had: its older sockets keep theirs
        # Names its marker of the shards' state (shards_that_lost_state()); never changes.
        self._marker = self._process
        # False: a message popped from Redis is delivered however long it then waits here.
        self.expire_fetched = True
        # Called with (group, full members, member count) when group_send skipped members.
        self.on_group_full: Callable[[str, list[str], int], None] = _log_group_full
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
        self._beating = False  # server_beat() has registered this process
        # Shards receive_many() leaves out until then (monotonic): found down, retried later.
        self._down_until: dict[int, float] = {}

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
        that falls that far behind). With ``reply_capacity=None`` the list is bounded by
        the capacity of the channel sent to, as channels_redis bounds it.
        """
        if is_process_specific(channel) and self.reply_capacity is not None:
            return self.reply_capacity
        return self.capacity(channel)

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
        keys: tuple[str, ...] = (self._key(channel), sent, full, registry)
        if len(body) > self.inline_message_size:
            # Stored by the script that queues the reference, and only if it is queued.
            blob_key, reference = self._out_of_line(once=True)
            ok = await self.shards[shard_index].eval(
                "send_blob",
                (*keys, blob_key),
                (
                    self._item(channel, reference),
                    self._list_capacity(channel),
                    self._expiry_s,
                    self._counter_name(channel),
                    body,
                    self._blob_ttl_ms(),
                ),
            )
        else:
            ok = await self._batchers[shard_index].submit(
                "send",
                keys,
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

    def _out_of_line(self, *, once: bool) -> tuple[str, bytes]:
        """A new key for a message body stored out of line, and the reference to send.

        The send script stores the body (for the message expiry) when it queues the
        reference. ``once``: the one receiver deletes it as it reads it; a group's copy,
        read by every member on its shard, expires instead.
        """
        token = secrets.token_hex(16)
        return self.keys.key("blob", token), self._serializer.dumps({OUT_OF_LINE: [token, once]})

    def _blob_ttl_ms(self) -> int:
        return max(1, int(self.expiry * 1000))

    async def _in_line(self, channel: str, ref: Any) -> Message | None:
        """The message an out-of-line reference on ``channel`` stands for; None if it is gone
        (expired with its message) or unreadable."""
        token, once = ref
        key = self.keys.key("blob", str(token))
        shard = self.shards[self.ring.shard_for(channel)]
        if once:
            body = await shard.execute("GETDEL", key)  # Redis 6.2 or later
        else:
            body = await shard.execute("GET", key)
        if body is None:
            log.error("dropping a large message on %r: it expired before it was read", channel)
            return None
        try:
            return self._serializer.loads(body)
        except MessageCorrupt as exc:
            log.error("dropping undecodable message on %r: %s", channel, exc)
            return None

    async def _whole(self, taken: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """``taken`` with every out-of-line reference replaced by its message, all read at
        once; a message whose body cannot be read (gone, its shard down) is dropped alone."""
        refs = [(i, channel, m) for i, (channel, m) in enumerate(taken) if OUT_OF_LINE in m]
        if not refs:
            return taken
        read = await asyncio.gather(
            *(self._in_line(channel, message[OUT_OF_LINE]) for _, channel, message in refs),
            return_exceptions=True,
        )
        wholes: dict[int, Message | None] = {}
        for (i, channel, _), whole in zip(refs, read, strict=True):
            if isinstance(whole, BaseException):
                if not isinstance(whole, Exception):
                    raise whole
                log.error(
                    "dropping a large message on %r: its body could not be read: %s", channel, whole
                )
                whole = None
            wholes[i] = whole
        out: list[tuple[str, Message]] = []
        for i, (channel, message) in enumerate(taken):
            if i in wholes:
                whole = wholes[i]
                if whole is None:
                    continue
                message = whole
            out.append((channel, message))
        return out

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
                    if self.expire_fetched and now - ts > self.expiry:
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
        self._purge_stash(now, channels)
        return out

    def _purge_stash(self, now: float, taking: Sequence[str] = ()) -> None:
        """Drop expired replies for reply channels nobody receives on (no unbounded growth)."""
        if time.monotonic() - self._last_purge < 5:
            return
        self._last_purge = time.monotonic()
        for name in list(self._stash):
            if not self.expire_fetched and (name in taking or name in self._name_waiters):
                continue  # fetched for a receiver: kept until it takes it
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
        """One non-blocking batch pop per shard, concurrently; results go to the stash.

        A shard that cannot be reached is set aside (see :meth:`_reachable`); only when
        none of them answered is its failure raised.
        """
        per_shard = max(1, limit // max(1, len(by_shard)))
        tasks = [self._start_pop(i, k, per_shard) for i, k in by_shard.items()]
        results = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        down: list[ShardUnavailable] = []
        for index, result in zip(by_shard, results, strict=True):
            if isinstance(result, ShardUnavailable):
                self._set_aside(index, result)
                down.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                self._back(index)
        if down and len(down) == len(by_shard):
            raise down[0]

    def _set_aside(self, index: int, exc: ShardUnavailable) -> None:
        """Leave shard ``index`` out of receive_many() for BLOCK_SECONDS: the others serve on."""
        if index not in self._down_until:
            log.error("receiving from the other shards while this one is down: %s", exc)
        self._down_until[index] = time.monotonic() + BLOCK_SECONDS

    def _back(self, index: int) -> None:
        if self._down_until.pop(index, None) is not None:
            log.info("redis shard %d answers again", index)

    def _reachable(self, by_shard: dict[int, list[str]]) -> dict[int, list[str]]:
        """The shards of ``by_shard`` not set aside; all of them when every one is."""
        if not self._down_until:
            return by_shard
        now = time.monotonic()
        live = {i: k for i, k in by_shard.items() if self._down_until.get(i, 0.0) <= now}
        return live or by_shard

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
        # A failure nobody waits for any more (a shard found down meanwhile) is not an error
        # to report at garbage collection: the next receive hears it from its own pop.
        task.add_done_callback(_retrieved)
        self._blocking[ident] = task
        return task

    async def _wait(self, tasks: dict[int, asyncio.Task[None]], timeout: float) -> None:
        """Until a blocking pop (one per shard) returns or a deposit wakes us; a shard that
        failed is set aside, and its failure raised only when every shard failed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            # Waiting is cancellable; the blocking pops are not cancelled (they would lose data).
            await asyncio.wait(
                [*tasks.values(), fut], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._waiters.discard(fut)
        failures: list[BaseException] = []
        for index, task in tasks.items():
            if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
                if not isinstance(exc, ShardUnavailable):
                    raise exc
                self._set_aside(index, exc)
                failures.append(exc)
        if failures and len(failures) == len(tasks):
            raise failures[0]

    async def receive_many(
        self,
        channels: Iterable[str],
        max_messages: int = 100,
        timeout: float | None = None,
    ) -> list[tuple[str, Message]]:
        names = [self._receivable(c) for c in channels]
        if not names:
            raise ValueError("receive_many needs at least one channel")
        by_shard = self._keys_by_shard(names)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closing:
                raise ChannelLayerError("the channel layer is closing")
            out = self._take(names, max_messages)
            if len(out) < max_messages:
                await self._pop_now(self._reachable(by_shard), max_messages - len(out))
                out += self._take(names, max_messages - len(out))
            if out:
                return await self._whole(out)
            remaining = BLOCK_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return []
            live = self._reachable(by_shard)
            tasks = {i: self._start_blocking(i, keys) for i, keys in live.items()}
            await self._wait(tasks, min(remaining, BLOCK_SECONDS + 1))

    async def receive(self, channel: str) -> Message:
        """One message of ``channel``.

        Concurrent receivers of one channel share one reader task: each of its pops
        fetches as many messages as receivers are waiting (at most
        ``RECEIVE_PREFETCH_MAX``), so N receivers cost one round trip, not N. Every
        reply channel of this process (``prefix!*``) shares the reader of its list.
        """
        self._receivable(channel)
        key = self._key(channel)
        while True:
            got = self._take([channel], 1)
            if got:
                message = got[0][1]
                if OUT_OF_LINE not in message:
                    return message
                whole = await self._in_line(channel, message[OUT_OF_LINE])
                if whole is not None:
                    return whole
                continue
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

    def _receivable(self, channel: str) -> str:
        """``channel``, if this instance may receive on it. A reply channel (``prefix!x``) is
        read only by the instance whose :meth:`new_channel` made it: its replies share one
        list, and another reader would take them from their sockets. A name that no
        ``new_channel`` makes (``prefix!`` with nothing after it) would wait forever."""
        validate_channel_name(channel, receive=True)
        if is_process_specific(channel):
            prefix = non_local_name(channel)[:-1]
            if channel == prefix + "!":
                raise InvalidChannelName(
                    f"cannot receive on {channel!r}: a reply channel is prefix!name, as "
                    "new_channel() makes them"
                )
            if prefix.rpartition(".")[2] not in self._processes:
                raise InvalidChannelName(
                    f"cannot receive on {channel!r}: reply channels are received only by the "
                    "channel layer instance that made them (new_channel())"
                )
        return channel

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
        # A large body is stored out of line on each shard whose script queues the reference
        # (a shard that is down is skipped with its members, as for any message).
        blob_key, blob, blob_ttl = "", b"", 0
        if len(body) > self.inline_message_size:
            blob, blob_ttl = body, self._blob_ttl_ms()
            blob_key, body = self._out_of_line(once=False)
        sent, full, registry = self._meta_keys()
        per_shard: dict[int, tuple[list[str], list[Any]]] = {}
        for channel in members:
            keys, args = per_shard.setdefault(
                self.ring.shard_for(channel),
                (
                    [sent, full, registry, blob_key or self.keys.key("blob", "")],
                    [self._expiry_s, blob, blob_ttl],
                ),
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
            self.on_group_full(group, full_members, len(members))
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

    # --- protocol servers' heartbeats -----------------------------------------------------

    async def server_beat(self, ttl: float) -> bool:
        """Register this process as a live protocol server for ``ttl`` seconds. True when it
        had been swept as dead meanwhile (its sockets were taken out of their groups: they
        must reconnect); not when the registry was lost with a restarted shard.

        Once swept, the process goes on under a new name: the reply channels it makes from
        then on are out of reach of a sweep of the old name that may still be running.
        """
        registry = self._shard(SERVERS_REGISTRY)
        swept = await registry.eval(
            "server_beat",
            (self.keys.key("servers"), self.keys.key("server-swept", self._process)),
            (self._process, max(1, int(ttl * 1000))),
        )
        if swept:
            self._process = secrets.token_hex(6)
            self._processes.add(self._process)
            await registry.eval(
                "server_beat",
                (self.keys.key("servers"), self.keys.key("server-swept", self._process)),
                (self._process, max(1, int(ttl * 1000))),
            )
        self._beating = True
        return bool(swept)

    async def forget_server(self) -> None:
        """Leave the registry (a server that stops normally needs no sweeping)."""
        if self._beating:
            await self._shard(SERVERS_REGISTRY).execute(
                "ZREM", self.keys.key("servers"), self._process
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
        registry = self._shard(SERVERS_REGISTRY)
        claims = self.keys.key("servers", "sweeping")
        dead = await registry.eval(
            "servers_dead",
            (self.keys.key("servers"), claims, self.keys.key("servers", "seen")),
            (
                self.keys.key("server-swept", ""),
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
        group_start = self._group_key("")
        removed = 0
        for shard in self.shards:
            async with shard.guard("sweeping a dead server's keys"):
                groups: list[str] = []
                gone: list[str] = []
                expiring: list[str] = []
                async for raw in shard.client.scan_iter(match=self.keys.pattern(), count=1000):
                    key = _text(raw)
                    if key.startswith(group_start):
                        groups.append(key)
                    elif any(mark in key for mark in marks):
                        # Its reply lists go; its sockets' sessions, ordering counters and
                        # parked messages expire soon.
                        is_list = key.startswith(self.keys.channel_key_start)
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
        key = self.keys.key("alive", self._marker)

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

        results = await asyncio.gather(*(one(s) for s in self.shards), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ShardUnavailable):
                raise result
        return [s.index for s, lost in zip(self.shards, results, strict=True) if lost is True]

    def state_unchecked(self) -> bool:
        """A shard failed or dropped a connection since shards_that_lost_state() last read it
        (it may have restarted empty)."""
        return any(shard.suspect for shard in self.shards)

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
