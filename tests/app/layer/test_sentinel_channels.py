"""channels_redis's Sentinel host dict in channelapp's Channels 4 layer, against real
sentinels that (like the master) require a password."""

from __future__ import annotations

import pytest
import redis
from channelapp.channels import RedisChannelLayer
from channelapp.layer import ShardUnavailable

from devtools.procs import free_port
from devtools.sentinel import MASTER_NAME, sentinel_group

pytestmark = pytest.mark.redis


async def test_a_sentinel_config_sends_receives_and_groups() -> None:
    with sentinel_group(password="master-pw", sentinel_password="sentinel-pw") as group:
        sentinels = [("127.0.0.1", free_port())]  # asked first, answers nothing
        sentinels += [("127.0.0.1", s.port) for s in group.sentinels]
        host = {
            "sentinels": sentinels,
            "master_name": MASTER_NAME,
            "sentinel_kwargs": {"password": "sentinel-pw"},
            "password": "master-pw",
            "db": 1,
            "socket_timeout": 5,
        }
        layer = RedisChannelLayer(hosts=[host], prefix="sentinel-test")
        try:
            channel = await layer.new_channel()
            await layer.send(channel, {"type": "hello"})
            assert await layer.receive(channel) == {"type": "hello"}
            await layer.group_add("room", channel)
            await layer.group_send("room", {"type": "to.room"})
            assert await layer.receive(channel) == {"type": "to.room"}
            # Stored on the master, in the database the dict names.
            with redis.Redis(port=group.master.port, password="master-pw", db=1) as master:
                assert master.exists(layer.layer.keys.group("room"))
        finally:
            await layer.close()

        wrong = RedisChannelLayer(
            hosts=[{**host, "sentinel_kwargs": {"password": "nope"}, "failover_timeout": 0.3}]
        )
        try:
            with pytest.raises(
                ShardUnavailable, match=r"no master 'channelapp' found: sentinel .*WRONGPASS"
            ):
                await wrong.send("somewhere", {"type": "lost"})
        finally:
            await wrong.close()
