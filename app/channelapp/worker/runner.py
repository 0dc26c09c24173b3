"""The worker: take batches from the app's channels, run consumers with bounded concurrency.

Sync consumers (plain ``def``) run in a thread pool with one thread per message
the worker runs at once, so ``concurrency`` is both the pool and what the
autoscaler counts. Mounted ASGI apps get their lifespan startup before the first
message and their shutdown after the last.

SIGTERM stops taking messages, lets the ones in flight finish (up to
``shutdown_timeout``), hands back anything popped but not started, and exits:
a scale-down loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

from channelapp import metrics, protocol_settings, sync
from channelapp.application import App
from channelapp.consumers.asgi import Lifespan, mounts_of
from channelapp.consumers.context import Context
from channelapp.layer import BaseChannelLayer, ShardUnavailable, WorkerReport
from channelapp.sessions import session_store_for
from channelapp.settings import Settings
from channelapp.spec import WEBSOCKET_DISCONNECT, WEBSOCKET_RECEIVE
from channelapp.worker.dispatch import answer_failure, invoke
from channelapp.worker.liveness import Liveness
from channelapp.worker.ordering import RedisOrderingStore, ordering_store_for

log = logging.getLogger("channelapp.worker")

PARK_SWEEP_INTERVAL = 0.2  # seconds between checks of the sockets with parked messages


class Worker:
    def __init__(
        self,
        app: App,
        layer: BaseChannelLayer,
        settings: Settings | None = None,
        *,
        concurrency: int | None = None,
        park_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.layer = layer
        self.settings = settings or app.settings
        self.concurrency = concurrency or self.settings.worker_concurrency
        self.park_timeout = self.settings.park_timeout if park_timeout is None else park_timeout
        self.channels = app.channels
        self.sessions = session_store_for(layer, self.settings.session_ttl)
        self.id = secrets.token_hex(6)
        ordering = ordering_store_for(layer, self.id, self.settings.session_ttl)
        self.ordering = ordering
        self.liveness = (
            Liveness(ordering.layer, ordering.liveness_prefix + self.id)
            if isinstance(ordering, RedisOrderingStore)
            else None
        )
        self.inflight: set[asyncio.Task[None]] = set()
        self.handled = 0
        self.running = 0  # messages whose consumer runs now
        self.busy_seconds = 0.0  # time consumers spent on the messages handled
        self.ready = False
        self._stopping = asyncio.Event()
        self.pool = sync.new_pool(self.concurrency)

    def stop(self) -> None:
        self._stopping.set()

    def report(self) -> WorkerReport:
        return {
            "in_flight": self.running,
            "handled": self.handled,
            "busy_seconds": self.busy_seconds,
            "concurrency": self.concurrency,
        }

    async def _report_load(self) -> None:
        """Publish this worker's load until stopped; a failed report is retried next interval."""
        interval = self.settings.worker_report_interval
        ttl = max(self.settings.worker_report_ttl, 2 * interval)
        warned = False
        sweeping: asyncio.Task[None] | None = None
        try:
            while True:
                # The sweep runs on its own: a long one must not delay the load reports.
                if sweeping is None or sweeping.done():
                    sweeping = asyncio.create_task(self._sweep_dead_servers())
                try:
                    await self.layer.report_worker(self.id, self.report(), ttl)
                    if warned:
                        log.info("publishing the worker's load for the autoscaler again")
                    warned = False
                except (
                    Exception
                ) as exc:  # any failure (OOM, READONLY, a lost shard): retry, say once
                    if not warned:
                        log.warning(
                            "could not publish the worker's load for the autoscaler "
                            "(it stops counting this worker until this works again): %s",
                            exc,
                        )
                    warned = True
                await asyncio.sleep(interval)
        finally:
            if sweeping is not None:
                sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeping

    async def _sweep_dead_servers(self) -> None:
        """Protocol servers that died: their sockets leave their groups (see the layer)."""
        monitor = self.layer.monitor()
        if monitor is None:
            return
        try:
            await monitor.sweep_dead_servers()
        except ShardUnavailable as exc:  # the protocol servers sweep too; next time
            log.debug("sweeping after dead protocol servers failed: %s", exc)
        except Exception:  # its lease runs out and it is claimed again
            log.exception("sweeping after dead protocol servers failed")

    async def run(self) -> None:
        runtime = sync.Runtime(
            asyncio.get_running_loop(), self.layer, self.settings, self.sessions, self.pool
        )
        sync.bind(runtime)
        lifespans = [Lifespan(mount) for mount in mounts_of(self.app.router.routes)]
        started: list[Lifespan] = []
        try:
            for lifespan in lifespans:
                await lifespan.startup()  # LifespanFailed: this worker must not serve
                started.append(lifespan)
            await self._serve()
        finally:
            for lifespan in reversed(started):
                await lifespan.shutdown()
            self.pool.shutdown(wait=False, cancel_futures=True)
            sync.unbind(runtime)

    async def _serve(self) -> None:
        log.info(
            "worker consuming %s (concurrency %d: messages at once, and threads for sync "
            "consumers)",
            ", ".join(self.channels),
            self.concurrency,
        )
        if self.liveness is not None:
            await asyncio.to_thread(self.liveness.start)
        sweeper = asyncio.create_task(self._sweep_parked())
        reporter = asyncio.create_task(self._report_load())
        # The app's protocol settings, for protocol servers that never load the app.
        publisher = asyncio.create_task(
            protocol_settings.publish_forever(self.layer, self.settings)
        )
        try:
            await self._consume()
        finally:
            for task in (sweeper, reporter, publisher):
                task.cancel()
            await asyncio.gather(sweeper, reporter, publisher, return_exceptions=True)
            if self.liveness is not None:
                await asyncio.to_thread(self.liveness.stop)
            try:
                await self.layer.forget_worker(self.id)
            except ShardUnavailable:
                pass  # its report expires on its own

    async def _consume(self) -> None:
        self.ready = True
        backoff = 0.1
        while not self._stopping.is_set():
            free = self.concurrency - len(self.inflight)
            if free <= 0:
                await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            receive = asyncio.create_task(self.layer.receive_many(self.channels, free, timeout=1.0))
            stop = asyncio.create_task(self._stopping.wait())
            await asyncio.wait([receive, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not receive.done():
                receive.cancel()  # safe: popped messages wait in the layer and go back on close
                await asyncio.gather(receive, return_exceptions=True)
                break
            try:
                batch = receive.result()
            except ShardUnavailable as exc:
                self.ready = False
                log.error("channel layer unavailable, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.ready, backoff = True, 0.1
            for channel, message in batch:
                task = asyncio.create_task(self._handle(channel, message))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)
        await self.drain()

    async def drain(self) -> None:
        self.ready = False
        if self.inflight:
            log.info("stopping: waiting for %d message(s) in flight", len(self.inflight))
            _done, pending = await asyncio.wait(
                self.inflight, timeout=self.settings.shutdown_timeout
            )
            if pending:
                log.error("stopping: %d message(s) did not finish in time; cancelled", len(pending))
                for task in pending:
                    task.cancel()
        log.info("worker stopped after handling %d message(s)", self.handled)

    async def _handle(self, channel: str, message: dict[str, Any]) -> None:
        socket = message.get("reply_channel") if channel.startswith("websocket.") else None
        order = message.get("order")
        if not socket or not isinstance(order, int):
            await self._run(channel, message)
            return
        try:
            if not await self.ordering.claim(socket, order, message):
                return  # parked: its predecessor's worker runs it next, or the sweep does
        except ShardUnavailable as exc:
            log.error("ordering check failed, running %s out of band: %s", channel, exc)
            await self._run(channel, message)
            return
        current: dict[str, Any] | None = message
        while current is not None:
            kind = current.get("type", channel)
            await self._run(kind, current)
            if kind == WEBSOCKET_DISCONNECT:
                await self.ordering.forget(socket)
                return
            current = await self.ordering.advance(socket, int(current["order"]))

    async def _sweep_parked(self) -> None:
        """Run parked messages whose predecessor's worker died, or that waited too long."""
        while not self._stopping.is_set():
            await asyncio.sleep(PARK_SWEEP_INTERVAL)
            try:
                swept = await self.ordering.sweep(self.park_timeout)
            except ShardUnavailable as exc:
                log.error("sweeping parked messages failed: %s", exc)
                continue
            except Exception:  # never stop sweeping: parked messages would wait forever
                log.exception("sweeping parked messages failed")
                continue
            for socket, message, why in swept:
                if why == "dead":
                    log.warning(
                        "message %s of %s: the worker running its predecessor died; running it",
                        message.get("order"),
                        socket,
                    )
                else:
                    log.warning(
                        "message %s of %s waited %.1fs for its predecessor; running it",
                        message.get("order"),
                        socket,
                        self.park_timeout,
                    )
                task = asyncio.create_task(
                    self._handle(message.get("type", WEBSOCKET_RECEIVE), message)
                )
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)

    async def _run(self, channel: str, message: dict[str, Any]) -> None:
        ctx = Context(self.layer, self.settings, channel, message, self.sessions)
        t0 = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        self.running += 1
        try:
            outcome = await invoke(self.app, ctx)
        except Exception as exc:
            outcome = "error"
            log.exception("consumer for %s failed", channel)
            try:
                await answer_failure(ctx, exc)
            except Exception as exc:
                log.error("could not answer the failure on %s: %s", channel, exc)
        finally:
            metrics.IN_FLIGHT.dec()
            self.running -= 1
        elapsed = time.perf_counter() - t0
        metrics.HANDLER_LATENCY.labels(channel).observe(elapsed)
        metrics.MESSAGES_HANDLED.labels(channel, outcome).inc()
        self.busy_seconds += elapsed
        self.handled += 1
