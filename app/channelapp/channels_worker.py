"""``channelapp runworker``: Channels' ``manage.py runworker``, draining on SIGTERM and
reporting its load for the autoscaler.

As Channels' worker does, each named channel gets application instances of scope
``{"type": "channel", "channel": NAME}`` (the project's ``ProtocolTypeRouter`` sends them to
its ``ChannelNameRouter``), and the messages of the channel are handed to them in turn; an
instance handles one message at a time (a ``SyncConsumer``'s handler in a thread of the
instance's own), and ``concurrency`` instances per channel run at once (1, Channels' own, by
default).

Messages are taken from channelapp's layer behind the project's
``channelapp.channels.RedisChannelLayer`` (:mod:`channelapp.channels_project` points it there),
at most as many per channel as its instances are free for. The worker publishes its load
(messages running, handled, busy time, concurrency) as ``channelapp worker`` does, so the
operator's policy counts it. SIGTERM stops taking messages, lets the ones taken finish (up to
``shutdown_timeout``), sends back those that did not start, and exits: nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from channels.layers import get_channel_layer

from channelapp.errors import StartupError
from channelapp.health import serve_metrics
from channelapp.layer import BaseChannelLayer, ShardUnavailable, WorkerReport
from channelapp.settings import Settings

log = logging.getLogger("channelapp.worker")

Application = Callable[..., Awaitable[None]]


class _Channel:
    """One named channel: its waiting messages and what its instances are doing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.waiting: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.taken = 0  # messages fetched and not yet handled (waiting or running)
        self.freed = asyncio.Event()


class ChannelWorker:
    def __init__(
        self,
        application: Application,
        channels: list[str],
        layer: BaseChannelLayer,
        settings: Settings,
        *,
        concurrency: int = 1,
    ) -> None:
        if not channels:
            raise StartupError("runworker needs at least one channel name")
        self.application = application
        self.layer = layer
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.channels = {name: _Channel(name) for name in dict.fromkeys(channels)}
        self.id = secrets.token_hex(6)
        self.running = 0
        self.handled = 0
        self.busy_seconds = 0.0
        self.ready = False
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()  # set when no message taken is left unhandled

    def stop(self) -> None:
        self._stopping.set()

    def report(self) -> WorkerReport:
        return {
            "in_flight": self.running,
            "handled": self.handled,
            "busy_seconds": self.busy_seconds,
            "concurrency": self.concurrency * len(self.channels),
        }

    # --- application instances ----------------------------------------------------------------

    def _receive_for(
        self, channel: _Channel, current: list[float]
    ) -> Callable[[], Awaitable[dict[str, Any]]]:
        """An instance's ``receive``: called again once its previous message is handled
        (``current`` holds when the message it runs started)."""

        async def receive() -> dict[str, Any]:
            if current:
                self._done(channel, time.perf_counter() - current.pop())
            message = await channel.waiting.get()
            self.running += 1
            current.append(time.perf_counter())
            return message

        return receive

    def _done(self, channel: _Channel, seconds: float) -> None:
        self.running -= 1
        self.handled += 1
        self.busy_seconds += seconds
        channel.taken -= 1
        channel.freed.set()
        if not any(c.taken for c in self.channels.values()):
            self._idle.set()

    async def _instance(self, channel: _Channel) -> None:
        """One application instance of ``channel``; one that raises is logged and replaced
        (its message counts as handled)."""

        async def send(message: MutableMapping[str, Any]) -> None:
            raise RuntimeError(f"a consumer of channel {channel.name!r} has nobody to send to")

        while True:
            current: list[float] = []
            scope = {"type": "channel", "channel": channel.name}
            try:
                # A thread of its own for the instance's sync code (a SyncConsumer's handlers,
                # thread-sensitive), as Django gives each request: instances run side by side.
                async with ThreadSensitiveContext():
                    await self.application(scope, self._receive_for(channel, current), send)
            except Exception:
                log.exception("consumer of channel %r raised", channel.name)
            if current:  # the message it was running ends with it
                self._done(channel, time.perf_counter() - current.pop())
            await asyncio.sleep(0.1)

    # --- fetching --------------------------------------------------------------------------------

    async def _fetch(self, channel: _Channel) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            free = self.concurrency - channel.taken
            if free <= 0:
                channel.freed.clear()
                await self._until(channel.freed.wait())
                continue
            try:
                batch = await self._until(
                    self.layer.receive_many([channel.name], free, timeout=1.0)
                )
            except ShardUnavailable as exc:
                self.ready = False
                log.error("channel layer unavailable, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.ready, backoff = True, 0.1
            for _, message in batch or ():
                channel.taken += 1
                channel.waiting.put_nowait(message)

    async def _until(self, awaitable: Awaitable[Any]) -> Any:
        """``awaitable``'s result, or None once the worker is told to stop (a receive cut off
        this way loses nothing: messages popped meanwhile go back when the layer closes)."""
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    # --- load reports ------------------------------------------------------------------------------

    async def _report_load(self) -> None:
        interval = self.settings.worker_report_interval
        ttl = max(self.settings.worker_report_ttl, 2 * interval)
        while True:
            try:
                await self.layer.report_worker(self.id, self.report(), ttl)
            except Exception as exc:  # retried next interval
                log.debug("could not publish the worker's load: %s", exc)
            await asyncio.sleep(interval)

    # --- the whole run -----------------------------------------------------------------------------

    async def run(self) -> None:
        log.info(
            "runworker consuming %s (%d instance(s) per channel)",
            ", ".join(self.channels),
            self.concurrency,
        )
        instances = [
            asyncio.create_task(self._instance(channel))
            for channel in self.channels.values()
            for _ in range(self.concurrency)
        ]
        reporter = asyncio.create_task(self._report_load())
        fetchers = [asyncio.create_task(self._fetch(c)) for c in self.channels.values()]
        self.ready = True
        try:
            await asyncio.gather(*fetchers)
            await self._drain()
        finally:
            for task in (*fetchers, *instances, reporter):
                task.cancel()
            await asyncio.gather(*fetchers, *instances, reporter, return_exceptions=True)
            await self._give_back()
            with contextlib.suppress(ShardUnavailable):
                await self.layer.forget_worker(self.id)

    async def _drain(self) -> None:
        """Wait for the messages taken to be handled, up to ``shutdown_timeout``."""
        if any(c.taken for c in self.channels.values()):
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.settings.shutdown_timeout)
        left = sum(c.taken for c in self.channels.values())
        if left:
            log.warning("stopping with %d message(s) not handled within the timeout", left)
        else:
            log.info("stopping: every message taken was handled")

    async def _give_back(self) -> None:
        """Messages taken that no instance started go back to their channel."""
        for channel in self.channels.values():
            while not channel.waiting.empty():
                message = channel.waiting.get_nowait()
                try:
                    await self.layer.send(channel.name, message)
                except Exception:
                    log.exception("a message of %r could not be sent back", channel.name)


def project_layer() -> Any:
    """The project's default layer: channelapp's (``channelapp.channels.RedisChannelLayer``)."""
    layer = get_channel_layer()
    core = getattr(layer, "layer", None)
    if not isinstance(core, BaseChannelLayer):
        raise StartupError(
            "runworker needs CHANNEL_LAYERS['default'] to be channelapp.channels.RedisChannelLayer: "
            "set CHANNELAPP_REDIS_URLS (it is pointed there) or set that BACKEND"
        )
    return layer


async def run_channel_worker_async(
    application: Application,
    channels: list[str],
    settings: Settings,
    *,
    concurrency: int = 1,
    metrics_host: str = "127.0.0.1",
    metrics_port: int = 0,
) -> None:
    project = project_layer()
    worker = ChannelWorker(application, channels, project.layer, settings, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    side = None
    if metrics_port:
        try:
            side = await serve_metrics(metrics_host, metrics_port, lambda: worker.ready)
        except OSError as exc:
            raise StartupError(
                f"cannot listen for metrics on {metrics_host}:{metrics_port}: {exc}"
            ) from None
    try:
        await worker.run()
    finally:
        await project.close_pools()
        if side is not None:
            await side.cleanup()
