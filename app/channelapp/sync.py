"""Sync code in a worker: plain ``def`` consumers run in the worker's thread pool.

The worker's event loop keeps the channel layer; a consumer thread that needs it
(``ctx.reply``, ``Group(...).send``) hands a coroutine to that loop and waits for
the result with :func:`call`. The pool has one thread per message the worker runs
at once (its concurrency), so a sync consumer never waits for a thread and the
autoscaler counts exactly the pool.

Django's ORM is kept healthy the way Channels 1 did it: ``close_old_connections``
runs before and after every sync message, so a connection past ``CONN_MAX_AGE``
(or broken) is closed and never leaks into the next message on that thread.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import inspect
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from channelapp.errors import AppLoadError
from channelapp.layer import BaseChannelLayer, layer_from_settings
from channelapp.sessions import SessionStore, session_store_for
from channelapp.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    """What code running inside a worker (either thread) can reach."""

    loop: asyncio.AbstractEventLoop
    layer: BaseChannelLayer
    settings: Settings
    sessions: SessionStore
    pool: ThreadPoolExecutor


_runtime: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "channelapp_runtime", default=None
)
# The last worker started in this process: for threads that did not inherit a context (a
# thread an application started itself). A worker process runs one worker.
_process_runtime: Runtime | None = None


class NotInWorker(RuntimeError):
    """Layer access from a thread that belongs to no running worker."""


def bind(runtime: Runtime) -> None:
    """Make ``runtime`` the current one for this task (and the tasks and threads it starts)."""
    global _process_runtime
    _runtime.set(runtime)
    _process_runtime = runtime


def unbind(runtime: Runtime) -> None:
    global _process_runtime
    if _process_runtime is runtime:
        _process_runtime = None


def current() -> Runtime:
    """The running worker's runtime, else this process's standalone one (see below)."""
    runtime = _runtime.get() or _process_runtime
    if runtime is None:
        runtime = _standalone()
    return runtime


_standalone_lock = threading.Lock()
_standalone_runtime: Runtime | None = None


def _standalone_settings() -> Settings:
    base = None
    if _django_ready():
        from django.conf import settings as django_settings

        try:
            base = Settings.from_mapping(getattr(django_settings, "CHANNELAPP", None))
        except ValueError as exc:
            raise AppLoadError(str(exc)) from None
    return Settings.from_env(base)


def _standalone() -> Runtime:
    """For code that runs outside any worker (a management command, a shell, a cron job):
    a layer of its own from the ``CHANNELAPP_*`` settings (and a Django project's
    ``CHANNELAPP``), on an event loop in a daemon thread, so ``Group(...).send`` reaches
    the app's sockets as it did in Channels 1. Without Redis URLs there is no app to reach."""
    global _standalone_runtime
    with _standalone_lock:
        if _standalone_runtime is not None:
            return _standalone_runtime
        settings = _standalone_settings()
        if not settings.redis_urls:
            raise NotInWorker(
                "no channelapp worker runs in this process and CHANNELAPP_REDIS_URLS is not "
                "set: channel layer calls from sync code work inside consumers and views of a "
                "running worker, or anywhere with CHANNELAPP_REDIS_URLS (and the app's "
                "CHANNELAPP_KEY_PREFIX) set"
            )
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="channelapp-standalone-layer", daemon=True
        )
        thread.start()

        async def make_layer() -> BaseChannelLayer:
            return layer_from_settings(settings)

        layer = asyncio.run_coroutine_threadsafe(make_layer(), loop).result()
        _standalone_runtime = Runtime(
            loop, layer, settings, session_store_for(layer, settings.session_ttl), new_pool(4)
        )
        atexit.register(_close_standalone, _standalone_runtime)
        return _standalone_runtime


def _close_standalone(runtime: Runtime) -> None:
    try:
        asyncio.run_coroutine_threadsafe(runtime.layer.close(), runtime.loop).result(10)
    except Exception:  # exiting anyway; the layer's connections close with the process
        pass
    runtime.loop.call_soon_threadsafe(runtime.loop.stop)


def call(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the worker's event loop from a consumer thread and return its result."""
    try:
        runtime = current()
    except NotInWorker:
        coro.close()
        raise
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is runtime.loop:
        coro.close()
        raise RuntimeError(
            "a sync channel layer call was made on the worker's event loop: in async code, "
            "await the async form instead"
        )
    return asyncio.run_coroutine_threadsafe(coro, runtime.loop).result()


def is_sync_callable(fn: Any) -> bool:
    """True for a plain function or method (not ``async def``, not an async-callable object)."""
    if inspect.iscoroutinefunction(fn):
        return False
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial):
        return not inspect.iscoroutinefunction(getattr(fn, "func", None))
    return not inspect.iscoroutinefunction(type(fn).__call__)


def _django_ready() -> bool:
    if "django.db" not in sys.modules:
        return False
    from django.apps import apps

    return bool(apps.ready)


def close_old_db_connections() -> None:
    """Django's per-request connection hygiene, per message (no-op without a set-up Django)."""
    if _django_ready():
        from django.db import close_old_connections

        close_old_connections()


_busy_lock = threading.Lock()
_busy = 0  # consumer threads of this process running sync code now


def busy_threads() -> int:
    """How many consumer threads run sync code now (after a worker stopped: the consumers
    that outlived its shutdown timeout, which no one can stop)."""
    return _busy


def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    global _busy
    with _busy_lock:
        _busy += 1
    try:
        close_old_db_connections()
        try:
            return fn(*args)
        finally:
            close_old_db_connections()
    finally:
        with _busy_lock:
            _busy -= 1


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the worker's consumer pool, in a copy of this task's context."""
    runtime = current()
    context = contextvars.copy_context()
    return await runtime.loop.run_in_executor(
        runtime.pool, functools.partial(context.run, _in_thread, fn, *args)
    )


def new_pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="channelapp-sync")


def in_pool_thread() -> bool:
    return threading.current_thread().name.startswith("channelapp-sync")
