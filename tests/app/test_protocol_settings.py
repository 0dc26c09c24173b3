"""The app's protocol settings: published by its workers, followed by protocol servers that
never load the app; a later generation wins and an older one never does; a variable of the
protocol server's environment wins field by field."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from channelapp import protocol_settings
from channelapp.application import App
from channelapp.layer import BaseChannelLayer, InMemoryChannelLayer, RedisChannelLayer
from channelapp.server import published_settings
from channelapp.server.protocol import ProtocolServer
from channelapp.settings import PROTOCOL_ENV_ONLY, PROTOCOL_FIELDS, Settings
from channelapp.worker.runner import Worker

from devtools.redis import RedisServer

SERVER_DIR = Path(protocol_settings.__file__).parent / "server"
_prefixes = itertools.count()

APP_SETTINGS = Settings(
    allowed_hosts=["chat.example"],
    allowed_origins=["https://partner.example"],
    max_body_size=4096,
    read_timeout=7.0,
)


def settings_read_by_the_server() -> set[str]:
    names = {f.name for f in dataclasses.fields(Settings)}
    read: set[str] = set()
    for path in SERVER_DIR.rglob("*.py"):
        read |= set(re.findall(r"settings\.([a-z_]+)", path.read_text())) & names
    return read


def test_every_setting_the_server_reads_is_published_or_from_its_environment() -> None:
    read = settings_read_by_the_server()
    assert {"allowed_hosts", "allowed_origins", "max_body_size"} <= read  # the scan finds them
    assert read <= set(PROTOCOL_FIELDS) | set(PROTOCOL_ENV_ONLY), read - set(PROTOCOL_FIELDS)
    assert not set(PROTOCOL_FIELDS) & set(PROTOCOL_ENV_ONLY)
    names = {f.name for f in dataclasses.fields(Settings)}
    assert set(PROTOCOL_FIELDS) <= names and set(PROTOCOL_ENV_ONLY) <= names
    # Secrets and the way to Redis are never published.
    assert {"secret_key", "encryption_keys", "redis_password", "redis_urls"} <= set(
        PROTOCOL_ENV_ONLY
    )


@pytest.fixture
async def redis_layer(redis_session_server: RedisServer) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(
        [redis_session_server.url], prefix=f"pubtest{next(_prefixes)}-{time.monotonic_ns()}"
    )
    yield layer
    await layer.close()


@pytest.fixture(params=["memory", "redis"])
def layer(request: pytest.FixtureRequest) -> BaseChannelLayer:
    """Both stores: Redis, and the in-memory layer's (`channelapp dev`)."""
    if request.param == "redis":
        redis: RedisChannelLayer = request.getfixturevalue("redis_layer")
        return redis
    return InMemoryChannelLayer()


async def eventually(check: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)
    assert check(), what


async def test_a_newer_generation_replaces_an_older_never_the_reverse(
    layer: BaseChannelLayer,
) -> None:
    assert await protocol_settings.read(layer) is None
    newer = dataclasses.replace(APP_SETTINGS, allowed_hosts=["new.example"])
    assert await protocol_settings.publish(layer, APP_SETTINGS, 1_000)
    assert await protocol_settings.publish(layer, newer, 2_000)
    # An old worker of a rollout, still running, publishes again: refused.
    assert not await protocol_settings.publish(layer, APP_SETTINGS, 1_000)
    got = await protocol_settings.read(layer)
    assert got is not None and got.generation == 2_000
    assert got.values["allowed_hosts"] == ["new.example"]
    assert set(got.values) == set(PROTOCOL_FIELDS)
    # The same worker publishing again (a Redis that lost it) is taken.
    assert await protocol_settings.publish(layer, newer, 2_000)


async def test_an_older_generation_takes_over_once_the_newer_stopped_publishing(
    layer: BaseChannelLayer,
) -> None:
    """A worker of an old deploy started late (a scale-up during a rollout) published last:
    once it is gone its lease runs out, and the live workers' settings are back."""
    late_old = dataclasses.replace(APP_SETTINGS, allowed_hosts=["old.example"])
    assert await protocol_settings.publish(layer, late_old, 2_000, lease=0.3)
    assert not await protocol_settings.publish(layer, APP_SETTINGS, 1_000, lease=0.3)
    await asyncio.sleep(0.5)  # the late one stopped publishing
    assert await protocol_settings.publish(layer, APP_SETTINGS, 1_000, lease=0.3)
    got = await protocol_settings.read(layer)
    assert got is not None and got.values["allowed_hosts"] == ["chat.example"]


async def test_a_workers_publication_reaches_a_protocol_server_without_the_app(
    redis_layer: RedisChannelLayer,
) -> None:
    server = ProtocolServer(Settings(), redis_layer)
    assert server.settings.allowed_hosts == []
    worker = Worker(App([], settings=APP_SETTINGS), redis_layer, APP_SETTINGS)
    running = asyncio.create_task(worker.run())
    try:
        async with published_settings.following(server, Settings(), interval=0.05, environ={}):
            await eventually(
                lambda: server.settings.allowed_hosts == ["chat.example"],
                what="the worker's settings on the server",
            )
            assert server.settings.allowed_origins == ["https://partner.example"]
            assert server.settings.max_body_size == 4096
            assert server.settings.read_timeout == 7.0
            # A worker of the next deploy (a later generation) wins; this one cannot put
            # its own back.
            later = dataclasses.replace(APP_SETTINGS, allowed_hosts=["v2.example"])
            now = await protocol_settings.generation_now(redis_layer)
            assert await protocol_settings.publish(redis_layer, later, now + 1)
            await eventually(lambda: server.settings.allowed_hosts == ["v2.example"])
            assert not await protocol_settings.publish(redis_layer, APP_SETTINGS, now)
            await asyncio.sleep(0.3)
            assert server.settings.allowed_hosts == ["v2.example"]
    finally:
        worker.stop()
        await running


async def test_a_worker_publishes_again_after_redis_lost_it(
    redis_layer: RedisChannelLayer, redis_session_server: RedisServer
) -> None:
    publisher = asyncio.create_task(
        protocol_settings.publish_forever(redis_layer, APP_SETTINGS, interval=0.1)
    )
    try:
        async with asyncio.timeout(10):
            while await protocol_settings.read(redis_layer) is None:
                await asyncio.sleep(0.02)
            redis_session_server.command("DEL", redis_layer.keys.key(protocol_settings.RECORD))
            assert await protocol_settings.read(redis_layer) is None
            while await protocol_settings.read(redis_layer) is None:
                await asyncio.sleep(0.02)
    finally:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)


async def test_the_protocol_servers_environment_wins_field_by_field(
    layer: BaseChannelLayer,
) -> None:
    environ = {"CHANNELAPP_MAX_BODY_SIZE": "100", "CHANNELAPP_ALLOWED_ORIGINS": "*"}
    base = Settings.from_env(environ=environ)
    server = ProtocolServer(base, layer)
    assert await protocol_settings.publish(layer, APP_SETTINGS, 10)
    async with published_settings.following(server, base, interval=0.05, environ=environ) as f:
        await eventually(lambda: server.settings.allowed_hosts == ["chat.example"])
        assert server.settings.max_body_size == 100
        assert server.settings.allowed_origins == ["*"]
        assert server.settings.read_timeout == 7.0
        assert f is not None and f.from_env == {"max_body_size", "allowed_origins"}


async def test_unusable_or_unknown_published_values_are_not_taken(
    redis_layer: RedisChannelLayer,
) -> None:
    store = protocol_settings.store_for(redis_layer)
    values = {
        **APP_SETTINGS.protocol_side(),
        "max_frame_size": "big",  # wrong type: skipped, the rest taken
        "a_later_setting": 1,  # a newer runtime's field: ignored
    }
    assert await store.publish(protocol_settings.Published(5, values))
    server = ProtocolServer(Settings(), redis_layer)
    async with published_settings.following(server, Settings(), interval=0.05, environ={}):
        await eventually(lambda: server.settings.allowed_hosts == ["chat.example"])
        assert server.settings.max_frame_size == Settings().max_frame_size
        # A value nothing can run with refuses the whole publication.
        bad = {**APP_SETTINGS.protocol_side(), "allowed_hosts": ["bad.example"], "read_timeout": 0}
        assert await store.publish(protocol_settings.Published(6, bad))
        await asyncio.sleep(0.3)  # several reads
        assert server.settings.allowed_hosts == ["chat.example"]
        assert server.settings.read_timeout == 7.0
