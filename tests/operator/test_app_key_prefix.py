"""Two ChannelApps on one external Redis: each app's pods (configured by the builders' env) and
the operator's depth reads (the supervisor) use the app's own key prefix, so one app's queue
never scales the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from channelapp.layer import RedisChannelLayer, layer_from_settings
from channelapp.settings import HTTP_REQUEST, Settings
from channelapp_operator import builders
from channelapp_operator.supervisor import AppSupervisor

from devtools.redis import RedisServer

pytestmark = pytest.mark.redis

NAMESPACE = "shop"


def spec_on(server: RedisServer) -> dict[str, Any]:
    return {"redis": {"external": {"urls": [server.url]}}}


def pod_settings(app: str, spec: dict[str, Any]) -> Settings:
    """The settings an app container gets from the env the builders write."""
    env = {e["name"]: e["value"] for e in builders.app_env(app, NAMESPACE, spec) if "value" in e}
    return Settings.from_env(environ=env)


@pytest.fixture
async def pods_of_a(redis_server: RedisServer) -> AsyncIterator[RedisChannelLayer]:
    layer = layer_from_settings(pod_settings("a", spec_on(redis_server)))
    assert isinstance(layer, RedisChannelLayer)
    yield layer
    await layer.flush()
    await layer.close()


async def test_two_apps_on_one_redis_see_only_their_own_channels(
    redis_server: RedisServer, pods_of_a: RedisChannelLayer
) -> None:
    spec = spec_on(redis_server)
    settings_b = pod_settings("b", spec)
    assert pods_of_a.prefix != settings_b.key_prefix
    for i in range(100):
        await pods_of_a.send(HTTP_REQUEST, {"n": i})

    def supervisor(app: str) -> AppSupervisor:
        return AppSupervisor(NAMESPACE, app, kube=None, post_event=lambda *_: None)  # type: ignore[arg-type]

    sup_a, sup_b = supervisor("a"), supervisor("b")
    try:
        depth_a, depth_b = await sup_a.read_depth(spec), await sup_b.read_depth(spec)
    finally:
        for sup in (sup_a, sup_b):
            await sup.close()
    assert depth_a.ok and depth_a.depth == 100, depth_a
    assert depth_b.ok and depth_b.depth == 0, depth_b

    pods_of_b = layer_from_settings(settings_b)
    try:
        assert await pods_of_b.receive_many([HTTP_REQUEST], timeout=0.3) == []
        await pods_of_b.flush()  # flushes b's keys only
    finally:
        await pods_of_b.close()
    assert (await pods_of_a.channel_statistics(HTTP_REQUEST))["messages_pending"] == 100


def test_a_prefix_cannot_reach_into_another_apps_keys() -> None:
    with pytest.raises(ValueError, match="no ':'"):
        layer_from_settings(
            Settings.from_env(
                environ={
                    "CHANNELAPP_KEY_PREFIX": "x:ch",
                    "CHANNELAPP_REDIS_URLS": "redis://127.0.0.1:1/0",
                }
            )
        )
