"""channelapp.channels.RedisChannelLayer as a drop-in for channels_redis in Channels 4 projects.

The pinned channels_redis's own ``tests/test_core.py`` is fetched from its sdist at test time
(nothing of it is kept in this repository), its import line pointed at channelapp's layer and
its host constants at a redis-server of this test, and run with pytest.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channelapp.channels import ChannelFull, RedisChannelLayer, decode_hosts, fernet_key
from channelapp.layer import base as core_base
from channels.exceptions import ChannelFull as ChannelsChannelFull
from channels.layers import BaseChannelLayer
from cryptography.fernet import Fernet

from devtools.redis import RedisServer
from tests.support.redis_fixtures import client_count

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.redis

IMPORT_LINE = "from channels_redis.core import ChannelFull, RedisChannelLayer"
# Tests of channels_redis's own internals, not of the channel layer API.
NOT_APPLICABLE = {
    # Fills channels_redis's private per-channel asyncio.Queue buffer (``receive_buffer``);
    # channelapp's layer keeps fetched messages in its own stash and has no such attribute.
    "test_receive_buffer_respects_capacity",
}


def pinned_channels_redis() -> str:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = [d for d in extras["channels"] if d.startswith("channels_redis==")]
    assert len(pins) == 1, "the channels extra pins channels_redis with =="
    return pins[0].partition("==")[2]


def fetch_test_core(version: str, into: Path) -> str:
    """channels_redis's tests/test_core.py from its sdist on PyPI."""
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q"),
            *("--no-deps", "--no-binary", ":all:", f"channels_redis=={version}", "-d", str(into)),
        ],
        check=True,
        timeout=240,
    )
    (sdist,) = into.glob("channels_redis-*.tar.gz")
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"channels_redis-{version}/tests/test_core.py")
        assert member is not None
        return member.read().decode()


def pointed_at(source: str, url_base: str) -> str:
    """The import line changed to channelapp's layer; the host constants to ``url_base``."""
    assert source.count(IMPORT_LINE) == 1
    out = source.replace(
        IMPORT_LINE, "from channelapp.channels import ChannelFull, RedisChannelLayer"
    )
    # Only TEST_HOSTS and the ten MULTIPLE_TEST_HOSTS name the server.
    assert out.count("redis://localhost:6379") == 11
    return out.replace("redis://localhost:6379", url_base)


def test_channels_redis_test_core(redis_server: RedisServer, tmp_path: Path) -> None:
    version = pinned_channels_redis()
    source = pointed_at(
        fetch_test_core(version, tmp_path), f"redis://127.0.0.1:{redis_server.port}"
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "test_core.py").write_text(source)
    (run / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\ntimeout = 60\n")
    report = run / "report.xml"
    env = dict(os.environ, CHANNELAPP_REDIS_URLS=redis_server.url)  # RedisChannelLayer()
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django"),
            *(f"--junitxml={report}", "test_core.py"),
        ],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        skipped = case.find("skipped")
        if kinds == ["skipped"] and skipped is not None and "xfail" in skipped.get("type", ""):
            outcomes[case.get("name", "")] = "xfail"
        else:
            outcomes[case.get("name", "")] = kinds[0] if kinds else "passed"
    print("\n".join(f"{outcome:8} {name}" for name, outcome in sorted(outcomes.items())))
    failed = {name for name, outcome in outcomes.items() if outcome in ("failure", "error")}
    base_failed = {re.sub(r"\[.*", "", name) for name in failed}
    assert base_failed == NOT_APPLICABLE, proc.stdout[-6000:]
    assert len(outcomes) == 28, proc.stdout[-3000:]


def test_hosts_in_every_channels_redis_form() -> None:
    urls, layer_wide = decode_hosts(
        [
            "redis://10.0.0.1:6379/0",
            ("10.0.0.2", 6380),
            ["10.0.0.3", 6381],
            {"address": "redis://10.0.0.4:6379", "password": "p@ss word", "db": 2},
            {"address": ("10.0.0.5", 6379)},
            {"host": "10.0.0.6", "port": 7000, "username": "u", "password": "x"},
        ]
    )
    assert urls == [
        "redis://10.0.0.1:6379/0",
        "redis://10.0.0.2:6380",
        "redis://10.0.0.3:6381",
        "redis://:p%40ss%20word@10.0.0.4:6379/2",
        "redis://10.0.0.5:6379",
        "redis://u:x@10.0.0.6:7000",
    ]
    assert layer_wide == {}
    urls, layer_wide = decode_hosts(
        [{"address": "redis://h:1", "ssl": True, "ssl_cert_reqs": "none", "socket_timeout": 3}]
    )
    assert urls == ["rediss://h:1"]
    assert layer_wide == {"ssl_options": {"ssl_cert_reqs": "none"}, "socket_timeout": 3.0}


def test_sentinel_and_unknown_settings_are_refused_by_name() -> None:
    sentinel = {"sentinels": [("10.0.0.1", 26379)], "master_name": "mymaster", "ssl": True}
    with pytest.raises(ValueError, match=r"CONFIG hosts\[0\]: 'ssl'.*no TLS"):
        RedisChannelLayer(hosts=[sentinel])
    with pytest.raises(ValueError, match="'retry_on_timeout'"):
        RedisChannelLayer(hosts=[{"address": "redis://h:1", "retry_on_timeout": True}])
    with pytest.raises(ValueError, match="serializer_format"):
        RedisChannelLayer(serializer_format="pickle")
    with pytest.raises(ValueError, match="list of Redis hosts"):
        RedisChannelLayer(hosts="redis://h:1")


def test_is_a_channels_layer_with_channels_exceptions() -> None:
    layer = RedisChannelLayer()
    assert isinstance(layer, BaseChannelLayer)
    assert issubclass(ChannelFull, ChannelsChannelFull)
    assert issubclass(ChannelFull, core_base.ChannelFull)
    assert layer.get_capacity("x") == 100
    # channels_redis's key derivation: any string becomes a Fernet key.
    Fernet(fernet_key("any secret"))


async def test_tutorial_hosts_two_instances_encrypted_regex_capacity(
    redis_server: RedisServer,
) -> None:
    config = {
        "hosts": [("127.0.0.1", redis_server.port)],
        "symmetric_encryption_keys": ["a secret", "an older secret"],
        "channel_capacity": {re.compile(r"^tight-\d+$"): 1, "http.request": 5},
        "serializer_format": "json",
    }
    server, worker = RedisChannelLayer(**config), RedisChannelLayer(**config)
    try:
        socket_a = await server.new_channel()
        socket_b = await server.new_channel()
        assert re.fullmatch(rf"specific\.{server.client_prefix}![0-9a-f]+", socket_a)
        await server.group_add("chat_lobby", socket_a)
        await server.group_add("chat_lobby", socket_b)
        await worker.group_send("chat_lobby", {"type": "chat.message", "message": "hi"})
        for socket in (socket_a, socket_b):
            got = await asyncio.wait_for(server.receive(socket), 5)
            assert got == {"type": "chat.message", "message": "hi"}
        # Stored encrypted: nothing of the message is readable in Redis.
        await worker.send("tight-1", {"type": "x", "secret": "plaintext-marker"})
        dump = await server.layer.shards[0].client.lrange(f"{server.prefix}:ch:tight-1", 0, -1)
        assert dump and b"plaintext-marker" not in dump[0]
        with pytest.raises(ChannelsChannelFull):
            await worker.send("tight-1", {"type": "x"})
        assert (await server.receive("tight-1"))["secret"] == "plaintext-marker"
        with pytest.raises(AssertionError):  # another instance's reply channel
            await worker.receive(socket_a)
        for bad in ("=+135!", "a" * 200, 7):
            with pytest.raises(TypeError):
                await worker.send(bad, {"type": "x"})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await worker.group_add("bad group!", socket_a)
    finally:
        await server.flush()
        await worker.close_pools()


async def test_fetched_messages_outlive_expiry(redis_server: RedisServer) -> None:
    """Replies fetched in one batch are delivered however long the receiver takes."""
    layer = RedisChannelLayer(hosts=[redis_server.url], expiry=1)
    try:
        one, two = await layer.new_channel(), await layer.new_channel()
        await layer.send(one, {"type": "a"})
        await layer.send(two, {"type": "b"})
        assert (await layer.receive(one))["type"] == "a"  # fetches both
        await asyncio.sleep(1.5)
        assert (await asyncio.wait_for(layer.receive(two), 2))["type"] == "b"
    finally:
        await layer.flush()


def test_sync_code_leaves_no_connection_open(redis_server: RedisServer) -> None:
    """async_to_sync from sync code (a view, a management command) runs each call in a loop
    of its own; the connections of each loop close with it."""
    layer = RedisChannelLayer(hosts=[("127.0.0.1", redis_server.port)])
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("room", channel)
    for i in range(10):
        async_to_sync(layer.group_send)("room", {"type": "chat.message", "n": i})
    got = [async_to_sync(layer.receive)(channel)["n"] for _ in range(10)]
    assert got == list(range(10))
    assert asyncio.run(client_count(redis_server)) == 0
    async_to_sync(layer.flush)()


COMMUNICATOR = textwrap.dedent(
    """
    import asyncio, json, sys
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channelapp.channels.RedisChannelLayer",
                "CONFIG": {"hosts": [("127.0.0.1", int(sys.argv[1]))]},
            }
        },
    )
    django.setup()

    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator


    class ChatConsumer(AsyncWebsocketConsumer):  # the Channels tutorial's, async
        async def connect(self):
            self.room_group_name = "chat_lobby"
            await self.channel_layer.group_add(self.room_group_name, self.channel_name)
            await self.accept()

        async def disconnect(self, close_code):
            await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

        async def receive(self, text_data):
            message = json.loads(text_data)["message"]
            await self.channel_layer.group_send(
                self.room_group_name, {"type": "chat.message", "message": message}
            )

        async def chat_message(self, event):
            await self.send(text_data=json.dumps({"message": event["message"]}))


    async def main():
        app = ChatConsumer.as_asgi()
        one = WebsocketCommunicator(app, "/ws/chat/lobby/")
        two = WebsocketCommunicator(app, "/ws/chat/lobby/")
        assert (await one.connect())[0] and (await two.connect())[0]
        await one.send_to(text_data=json.dumps({"message": "hello"}))
        for ws in (one, two):
            assert json.loads(await ws.receive_from(timeout=5)) == {"message": "hello"}
        await one.disconnect()
        await two.disconnect()
        await get_channel_layer().flush()
        print("chat ok")


    asyncio.run(main())
    """
)


def test_tutorial_chat_with_websocket_communicator(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    script = tmp_path / "chat.py"
    script.write_text(COMMUNICATOR)
    proc = subprocess.run(
        [sys.executable, str(script), str(redis_server.port)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == "chat ok"
