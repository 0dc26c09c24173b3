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
The receive machinery (pops, the local stash, readers, handing back what was not taken
on close) is :class:`~channelapp.layer.receiving.RedisReceiving`; statistics, load, the
worker and server registries and the lost-state checks are the layer's
:class:`~channelapp.layer.monitor.RedisMonitor` (``monitor()``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from channelapp.layer.base import (
    BaseChannelLayer,
    ChannelFull,
    ChannelStatistics,
    Message,
    ShardUnavailable,
    WorkerReport,
)
from channelapp.layer.capacity import CapacityOverrides, CapacityPolicy
from channelapp.layer.keyspace import DEFAULT_PREFIX, KeySpace
from channelapp.layer.monitor import (
    SERVERS_REGISTRY,
    SWEEP_GROUPS_PER_CALL,
    SWEEP_LEASE,
    SWEEP_MAX_GAP,
    WORKERS_REGISTRY,
    ConnectionOptions,
    RedisMonitor,
    open_shards,
)
from channelapp.layer.names import (
    InvalidChannelName,
    is_process_specific,
    non_local_name,
    validate_channel_name,
    validate_group_name,
)
from channelapp.layer.receiving import (
    BLOCK_SECONDS,
    OUT_OF_LINE,
    RECEIVE_PREFETCH_MAX,
    REPLY_BATCH,
    RedisReceiving,
)
from channelapp.layer.serializers import MAX_MESSAGE_SIZE, Serializer, frame
from channelapp.layer.shard import SendBatcher, Shard
from channelapp.layer.stats import LoadReading

__all__ = [
    "BLOCK_SECONDS",
    "INLINE_MESSAGE_SIZE",
    "OUT_OF_LINE",
    "RECEIVE_PREFETCH_MAX",
    "REPLY_BATCH",
    "SERVERS_REGISTRY",
    "SWEEP_GROUPS_PER_CALL",
    "SWEEP_LEASE",
    "SWEEP_MAX_GAP",
    "WORKERS_REGISTRY",
    "RedisChannelLayer",
]

log = logging.getLogger("channelapp.layer")

# A serialized message larger than this is stored out of line: its body under a key of its
# own (``P:blob:<token>``) on the shard of the channel, the channel's list carrying a small
# reference ``{OUT_OF_LINE: [token, read once]}`` that receive() replaces by the message.
INLINE_MESSAGE_SIZE = 1 << 20


def _log_group_full(group: str, full_members: list[str], members: int) -> None:
    log.warning(
        "group_send to %r: %d of %d member channel(s) full, message not queued for them: %s",
        group,
        len(full_members),
        members,
        full_members[:5],
    )


class RedisChannelLayer(RedisReceiving, BaseChannelLayer):
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
        self.shards = open_shards(
            hosts,
            password=password,
            max_connections=max_connections,
            ssl_options=ssl_options,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
        )
        self._serializer = Serializer(encryption_keys, max_size=max_message_size)
        self.inline_message_size = inline_message_size
        # Every key name, shard choice and stored encoding (also for sessions and ordering).
        self.keys = KeySpace(prefix, self.shards, self._serializer)
        self.prefix = self.keys.prefix
        self.ring = self.keys.ring
        self._batchers = [SendBatcher(s) for s in self.shards]
        receipts = self.keys.receipts(secrets.token_hex(8))
        for shard in self.shards:
            shard.keep_receipts(receipts)
        self._expiry_s = max(1, int(expiry))
        # Statistics, registries and lost-state checks over the same shards; it also holds the
        # process name this instance's reply channels carry (see RedisMonitor.server_beat()).
        self._monitor = RedisMonitor.over(
            self.keys,
            expiry=expiry,
            group_expiry=group_expiry,
            reply_capacity=reply_capacity,
            process=process,
        )
        # Called with (group, full members, member count) when group_send skipped members.
        self.on_group_full: Callable[[str, list[str], int], None] = _log_group_full
        self.group_full_count = 0
        self._init_receiving()

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

    async def new_channel(self, prefix: str = "specific") -> str:
        return validate_channel_name(f"{prefix}.{self._monitor.process}!{secrets.token_hex(8)}")

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
            if prefix.rpartition(".")[2] not in self._monitor.processes:
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
        # Per shard, per list: the members queued on it (a process's reply channels share one).
        lists: dict[int, dict[str, tuple[int, str, list[bytes]]]] = {}
        for channel in members:
            key = self._key(channel)
            on_shard = lists.setdefault(self.ring.shard_for(channel), {})
            entry = on_shard.get(key)
            if entry is None:
                entry = on_shard[key] = (
                    self._list_capacity(channel),
                    self._counter_name(channel),
                    [],
                )
            entry[2].append(self._item(channel, body))
        calls = []
        for index, on_shard in lists.items():
            keys = [sent, full, registry, blob_key or self.keys.key("blob", ""), *on_shard]
            args: list[Any] = [self._expiry_s, blob, blob_ttl]
            for capacity, name, items in on_shard.values():
                args += [len(items), capacity, name, *items]
            calls.append(self.shards[index].eval("send_many", keys, args))
        results = await asyncio.gather(*calls, return_exceptions=True)
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

    # --- the monitor: statistics, registries, lost state ----------------------------------

    def monitor(self) -> RedisChannelLayer:
        """The layer itself: it is a :class:`~channelapp.layer.monitor.LayerMonitor` whose
        calls go to its :class:`RedisMonitor` (same shards, same process name)."""
        return self

    @property
    def process(self) -> str:
        """The process name in the reply channels it makes now (a server swept as dead
        while alive goes on under a new one)."""
        return self._monitor.process

    async def channel_statistics(self, channel: str) -> ChannelStatistics:
        return (await self.channels_statistics([channel]))[channel]

    async def channels_statistics(self, channels: Iterable[str]) -> dict[str, ChannelStatistics]:
        return await self._monitor.channels_statistics(channels)

    async def statistics_and_health(
        self, channels: Iterable[str]
    ) -> tuple[dict[str, ChannelStatistics], list[ShardUnavailable]]:
        return await self._monitor.statistics_and_health(channels)

    async def load(self, channels: Iterable[str], *, workers: bool = True) -> LoadReading:
        return await self._monitor.load(channels, workers=workers)

    async def shard_statistics(self) -> list[ChannelStatistics]:
        return await self._monitor.shard_statistics()

    async def global_statistics(self) -> ChannelStatistics:
        return await self._monitor.global_statistics()

    async def unavailable(self) -> list[str]:
        return await self._monitor.unavailable()

    async def report_worker(self, worker: str, report: WorkerReport, ttl: float) -> None:
        await self._monitor.report_worker(worker, report, ttl)

    async def forget_worker(self, worker: str) -> None:
        await self._monitor.forget_worker(worker)

    async def server_beat(self, ttl: float) -> bool:
        return await self._monitor.server_beat(ttl)

    async def forget_server(self) -> None:
        await self._monitor.forget_server()

    async def sweep_dead_servers(
        self, *, max_gap: float = SWEEP_MAX_GAP, lease: float = SWEEP_LEASE
    ) -> list[str]:
        return await self._monitor.sweep_dead_servers(max_gap=max_gap, lease=lease)

    async def take_lost_replies(self, prefix: str) -> list[str]:
        return await self._monitor.take_lost_replies(prefix)

    async def shards_that_lost_state(self, ttl: int = 3600) -> list[int]:
        return await self._monitor.shards_that_lost_state(ttl)

    def state_unchecked(self) -> bool:
        return self._monitor.state_unchecked()

    def every_shard(self) -> Sequence[Shard]:
        return self._monitor.every_shard()

    def connection_options(self) -> list[ConnectionOptions]:
        return self._monitor.connection_options()

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

    async def close(self) -> None:
        """Stop receiving, hand popped-but-untaken messages back to Redis, close connections.

        Receivers still waiting get ``ChannelLayerError``; pops in flight are awaited,
        not cancelled, so what they bring back is returned too. The layer may be used
        again afterwards (connections reopen on demand).
        """
        try:
            await self._stop_receiving()
            for shard in self.shards:
                await shard.close()
        finally:
            self._closing = False
