"""The threads the poll loops' blocking Kubernetes API calls run on.

The API client is synchronous. Through :func:`asyncio.to_thread` every app's status
and scale writes would share the event loop's default executor (``min(32, CPUs + 4)``
threads) with every other blocking call of the operator: with hundreds of apps the
writes queue behind each other. The poll loops use a bounded pool of their own instead
(``--api-threads``), and scale writes a lane of their own, so a surge's replicas are
never queued behind status patches.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import kubernetes

P = ParamSpec("P")
T = TypeVar("T")

SCALE_THREADS = 4
OTHER_CALLERS = 16  # the default executor's threads (reconcile, drift) and a margin


class ApiThreads:
    def __init__(self, threads: int = 16, scale_threads: int = SCALE_THREADS) -> None:
        self.threads = max(1, threads)
        self.scale_threads = max(1, scale_threads)
        # Threads start on demand: an operator with few apps runs few.
        self._writes = ThreadPoolExecutor(self.threads, thread_name_prefix="api")
        self._scales = ThreadPoolExecutor(self.scale_threads, thread_name_prefix="api-scale")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the pool's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writes, functools.partial(fn, *args, **kwargs))

    async def scale(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the scale writes' own threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._scales, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._writes.shutdown(wait=False, cancel_futures=True)
        self._scales.shutdown(wait=False, cancel_futures=True)


def size_connection_pool(api_threads: int) -> None:
    """Let the API client (configured by ``load_config``) keep a connection to the API
    server per thread that may call it: the pool's, the scale lane's, and the event
    loop's default executor's besides. Beyond its default (5 per CPU) the client would
    open and drop a TLS connection per call while more threads call at once."""
    wanted = max(1, api_threads) + SCALE_THREADS + OTHER_CALLERS
    config = kubernetes.client.Configuration.get_default_copy()
    config.connection_pool_maxsize = max(config.connection_pool_maxsize or 0, wanted)
    kubernetes.client.Configuration.set_default(config)
