"""The Redis layer's receive machinery: pops, the local stash, readers and their teardown.

Popped messages that the caller has not taken yet (a blocking pop that returns
after its caller moved on, a batch larger than asked, replies for other
reply channels of the process) wait in a local *stash*; teardown pushes
what is left back to the head of its list, so a worker that stops loses nothing.

``receive_many()`` (a worker's batches) pops every shard of its channels at once and,
when nothing waits, blocks on one pop per shard; a shard found down is set aside for a
while so the others serve on. ``receive()`` (request bodies, replies awaited once) shares
one reader task per list among all its receivers, waking only those it fed.
``subscribe()`` (a protocol server's sockets) hands a reply channel's messages to a
callback straight from the reader of the process's reply list: no task waits per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from typing import Any

from channelapp.layer.common import ChannelLayerError, Message, ShardUnavailable
from channelapp.layer.keyspace import KeySpace
from channelapp.layer.names import is_process_specific
from channelapp.layer.serializers import MessageCorrupt, Serializer, unframe
from channelapp.layer.shard import Shard
from channelapp.layer.subscription import (
    RETRY_SECONDS,
    Deliver,
    Ended,
    ReceiveLoop,
    Subscription,
)

log = logging.getLogger("channelapp.layer")

BLOCK_SECONDS = 1.0  # longest single blocking pop; bounds shutdown and cancellation delays
# Most messages one receive() fetches for the receivers waiting on its channel.
RECEIVE_PREFETCH_MAX = 64
# Most replies one pop takes from a process's reply list.
REPLY_BATCH = 2048
# The key of a message stored out of line (see the layer's send): the channel's list
# carries ``{OUT_OF_LINE: [token, read once]}``, which receiving replaces by the message.
OUT_OF_LINE = "__channelapp_out_of_line__"


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class _Subscriber:
    """One subscribed reply channel: where its messages go, straight from the reader."""

    __slots__ = ("cancelled", "channel", "deliver", "ended", "fetching", "key", "owner")

    def __init__(
        self, owner: RedisReceiving, channel: str, key: str, deliver: Deliver, ended: Ended
    ) -> None:
        self.owner = owner
        self.channel = channel
        self.key = key
        self.deliver = deliver
        self.ended = ended
        self.cancelled = False
        self.fetching = False  # an out-of-line body is being read: later messages wait for it

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.owner._unsubscribe(self)

    def give(self, message: Message) -> None:
        """``deliver(message)``; a subscriber that raises loses that message, not the reader."""
        try:
            self.deliver(message)
        except Exception:
            log.exception("delivering a message of %s failed", self.channel)


class RedisReceiving:
    """Receiving for :class:`~channelapp.layer.redis.RedisChannelLayer`, which mixes it in.

    The layer provides its key space, shards, serializer, message expiry and which reply
    channels it may receive on (``_receivable``); this class keeps the receive state.
    """

    keys: KeySpace
    shards: list[Shard]
    expiry: float
    _serializer: Serializer

    def _init_receiving(self) -> None:
        # False: a message popped from Redis is delivered however long it then waits here.
        self.expire_fetched = True
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
        # Shards receive_many() leaves out until then (monotonic): found down, retried later.
        self._down_until: dict[int, float] = {}
        # Reply channels whose messages go to a callback as the reader deposits them.
        self._subscribers: dict[str, _Subscriber] = {}
        self._fetches: set[asyncio.Task[None]] = set()

    def _receivable(self, channel: str) -> str:
        """``channel``, if this instance may receive on it (the layer decides)."""
        raise NotImplementedError

    # --- out-of-line bodies ---------------------------------------------------------------

    async def _in_line(self, channel: str, ref: Any) -> Message | None:
        """The message an out-of-line reference on ``channel`` stands for; None if it is gone
        (expired with its message) or unreadable."""
        token, once = ref
        key = self.keys.key("blob", str(token))
        shard = self.shards[self.keys.shard_index(channel)]
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
        """Wake the receive()s of the names just deposited (not every waiting name), and hand
        subscribed names their messages."""
        fresh, self._fresh = self._fresh, set()
        subscribers = self._subscribers
        for name in fresh:
            sub = subscribers.get(name)
            if sub is not None:
                self._hand_over(sub)
                continue
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

    def _message(
        self, channel: str, stashed: tuple[float, bytes, str, bytes], now: float
    ) -> Message | None:
        """A stashed item of ``channel`` as its message; None when it expired here or cannot
        be decoded (said in the log)."""
        ts, body, _key, _item = stashed
        if self.expire_fetched and now - ts > self.expiry:
            return None
        try:
            return self._serializer.loads(body)
        except MessageCorrupt as exc:
            log.error("dropping undecodable message on %r: %s", channel, exc)
            return None

    def _take(self, channels: Sequence[str], limit: int) -> list[tuple[str, Message]]:
        out: list[tuple[str, Message]] = []
        now = time.time()
        progress = True
        while len(out) < limit and progress:
            progress = False
            for channel in channels:
                queue = self._stash.get(channel)
                while queue:
                    message = self._message(channel, queue.popleft(), now)
                    if message is None:
                        continue
                    out.append((channel, message))
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
            if not self.expire_fetched and (
                name in taking or name in self._name_waiters or name in self._subscribers
            ):
                continue  # fetched for a receiver: kept until it takes it
            queue = self._stash[name]
            while queue and now - queue[0][0] > self.expiry:
                queue.popleft()
            if not queue:
                del self._stash[name]

    def _keys_by_shard(self, channels: Sequence[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = defaultdict(list)
        for channel in channels:
            key = self.keys.channel(channel)
            keys = out[self.keys.shard_index(channel)]
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

    # --- subscriptions --------------------------------------------------------------------

    def subscribe(self, channel: str, deliver: Deliver, ended: Ended) -> Subscription:
        """Messages of one of this process's reply channels handed to ``deliver`` by the
        reader of the process's reply list as it pops them (what waits already, at once).

        Another channel is served by a receive loop (:class:`ReceiveLoop`). One subscription
        per channel; a second one, or a receive() beside it, is refused.
        """
        self._receivable(channel)
        if not is_process_specific(channel):
            return ReceiveLoop(self.receive, channel, deliver, ended)
        if channel in self._subscribers or channel in self._name_waiters:
            raise ValueError(f"{channel!r} is already being received")
        if self._closing:
            raise ChannelLayerError("the channel layer is closing")
        key = self.keys.channel(channel)
        sub = _Subscriber(self, channel, key, deliver, ended)
        self._subscribers[channel] = sub
        self._key_waiting[key] += 1  # the reader serves the subscriber like a receiver
        self._ensure_reader(channel, key)
        self._hand_over(sub)
        return sub

    def _unsubscribe(self, sub: _Subscriber) -> None:
        if self._subscribers.get(sub.channel) is not sub:
            return
        del self._subscribers[sub.channel]
        self._key_waiting[sub.key] -= 1
        if not self._key_waiting[sub.key]:
            del self._key_waiting[sub.key]

    def _hand_over(self, sub: _Subscriber) -> None:
        """Deliver what the stash holds for ``sub``, in order; an out-of-line body is read
        first (the messages after it wait)."""
        if sub.fetching:
            return
        queue = self._stash.get(sub.channel)
        now = time.time()
        while queue and not sub.cancelled:
            message = self._message(sub.channel, queue.popleft(), now)
            if message is None:
                continue
            if OUT_OF_LINE in message:
                sub.fetching = True
                task = asyncio.get_running_loop().create_task(self._fetch_for(sub, message))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)
                return
            sub.give(message)
        if queue is not None and not queue:
            self._stash.pop(sub.channel, None)

    async def _fetch_for(self, sub: _Subscriber, reference: Message) -> None:
        try:
            whole = await self._in_line(sub.channel, reference[OUT_OF_LINE])
        except Exception as exc:
            log.error(
                "dropping a large message on %r: its body could not be read: %s", sub.channel, exc
            )
            whole = None
        finally:
            sub.fetching = False
        if whole is not None and not sub.cancelled:
            sub.give(whole)
            # One turn of the loop for the subscriber to start on a message this large (a
            # socket's writer takes it out of its bounded outbox) before the ones that
            # arrived behind it are handed over, as a receive() loop would come back.
            await asyncio.sleep(0)
        self._hand_over(sub)

    def _ensure_reader(self, channel: str, key: str) -> asyncio.Task[None]:
        reader = self._readers.get(key)
        if reader is None or reader.done():
            if reader is not None and reader.done() and not reader.cancelled():
                reader.exception()
            reader = asyncio.get_running_loop().create_task(self._read(channel, key))
            reader.add_done_callback(functools.partial(self._reader_done, key))
            self._readers[key] = reader
        return reader

    def _subscribers_of(self, key: str) -> list[_Subscriber]:
        return [sub for sub in self._subscribers.values() if sub.key == key]

    def _restart_for_subscribers(self, key: str) -> None:
        subs = self._subscribers_of(key)
        if subs and not self._closing:
            self._ensure_reader(subs[0].channel, key)

    def _end_subscribers(self, subs: Iterable[_Subscriber], exc: BaseException) -> None:
        for sub in list(subs):
            sub.cancel()
            try:
                sub.ended(exc)
            except Exception:
                log.exception("ending the subscription of %s failed", sub.channel)

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
            # Top up the stash first, then take: nothing is taken out of the stash before an
            # await, so a receive cancelled at any await (a worker told to stop) has taken
            # nothing, and what its pops brought back goes back to Redis on close.
            stashed = sum(len(self._stash.get(name, ())) for name in names)
            if stashed < max_messages:
                await self._pop_now(self._reachable(by_shard), max_messages - stashed)
            out = self._take(names, max_messages)
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
        key = self.keys.channel(channel)
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
            if channel in self._subscribers:
                raise ValueError(f"{channel!r} is subscribed: its messages go to the subscriber")
            reader = self._ensure_reader(channel, key)
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
        exc = None if task.cancelled() else task.exception()  # receivers raise it too
        self._wake_key(key)
        if exc is None or self._closing:
            return
        if isinstance(exc, ShardUnavailable):
            # Subscribers wait the outage out: one line, then the reader starts again.
            if self._subscribers_of(key):
                log.error("receiving this process's replies: %s", exc)
                asyncio.get_running_loop().call_later(
                    RETRY_SECONDS, self._restart_for_subscribers, key
                )
            return
        self._end_subscribers(self._subscribers_of(key), exc)

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
        shard_index = self.keys.shard_index(channel)
        replies = is_process_specific(channel)
        while not self._closing:
            waiting = self._waiting(channel, key)
            if waiting <= 0:
                # A receiver just fed usually asks again within its next step: one turn of
                # the loop later it is waiting again, and this reader serves it instead of
                # a new one being started per message.
                await asyncio.sleep(0)
                waiting = self._waiting(channel, key)
                if waiting <= 0 or self._closing:
                    return
            # A reply list holds the replies of every socket of this process: take many.
            count = REPLY_BATCH if replies else min(RECEIVE_PREFETCH_MAX, waiting)
            # Shielded: cancelling the reader must not cancel a pop that may hold messages.
            if not await asyncio.shield(self._start_pop(shard_index, (key,), count)):
                await asyncio.shield(self._start_blocking(shard_index, [key]))

    # --- teardown -------------------------------------------------------------------------

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
                shard = self.keys.shard(channel)
                async with shard.guard("returning unreceived messages"):
                    await shard.client.lpush(key, *reversed(items))
            log.info("returned %d unreceived message(s) to %s", len(items), channel)

    async def _stop_receiving(self) -> None:
        """Stop receiving and hand popped-but-untaken messages back to Redis.

        Receivers still waiting get ``ChannelLayerError``; pops in flight are awaited,
        not cancelled, so what they bring back is returned too. ``_closing`` stays set
        (new receives are refused) until the layer clears it.
        """
        self._closing = True
        self._end_subscribers(
            self._subscribers.values(), ChannelLayerError("the channel layer is closing")
        )
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
