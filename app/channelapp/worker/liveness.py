"""A key on every shard that exists while this worker process lives.

The ordering sweep reads it to tell a predecessor that is still running from one
whose worker was killed. It is refreshed by a thread with its own event loop and
connections, so a worker whose loop is busy with a long consumer never looks dead;
a killed process stops refreshing and its key expires within ``TTL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import redis.asyncio as aioredis

from channelapp.layer import LayerMonitor

log = logging.getLogger("channelapp.worker")

TTL = 0.6  # seconds a dead worker still looks alive
REFRESH = 0.15  # seconds between refreshes


class Liveness:
    def __init__(self, layer: LayerMonitor, key: str) -> None:
        self.key = key
        # Same connection class and options as the layer's pools (auth, TLS, timeouts).
        self._pools = layer.connection_options()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._main, name="worker-liveness", daemon=True)

    def start(self) -> None:
        """Start refreshing; returns once the key is set on every shard (or after 5 s)."""
        self._thread.start()
        if not self._first.wait(timeout=5):
            log.warning("liveness key not set on every shard yet; parked messages may wait")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _main(self) -> None:
        asyncio.run(self._beat())

    async def _beat(self) -> None:
        clients = [
            aioredis.Redis(connection_pool=aioredis.ConnectionPool(connection_class=cls, **kwargs))
            for cls, kwargs in self._pools
        ]
        ttl_ms = int(TTL * 1000)
        try:
            while not self._stop.is_set():
                results = await asyncio.gather(
                    *(c.set(self.key, 1, px=ttl_ms) for c in clients), return_exceptions=True
                )
                failed = [r for r in results if isinstance(r, Exception)]
                for result in failed:
                    log.debug("liveness refresh failed: %s", result)
                if not failed:
                    self._first.set()
                await asyncio.sleep(REFRESH)
            await asyncio.gather(*(c.delete(self.key) for c in clients), return_exceptions=True)
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.aclose()
