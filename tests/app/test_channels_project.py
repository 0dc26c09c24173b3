"""How a Channels 4 project's CHANNEL_LAYERS is pointed at the app's shards
(channelapp.channels_project), and the ``asgi`` / ``runworker`` commands' refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest
from channelapp import channels_project
from channelapp.cli import load_asgi
from channelapp.errors import AppLoadError
from channelapp.settings import Settings

from devtools.paths import REPO


def test_password_goes_into_urls_that_carry_none() -> None:
    assert channels_project.with_password("redis://r:6379/0", "p@ss") == "redis://:p%40ss@r:6379/0"
    assert channels_project.with_password("redis://:own@r:6379/0", "p") == "redis://:own@r:6379/0"
    assert channels_project.with_password("redis://r:6379/0", None) == "redis://r:6379/0"
    sentinel = "redis+sentinel://s1:26379,s2:26379/mymaster"
    assert channels_project.with_password(sentinel, "p") == (
        "redis+sentinel://:p@s1:26379,s2:26379/mymaster"
    )


def test_layer_config_keeps_the_projects_shared_keys_and_takes_shards_and_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CHANNEL_CAPACITY", "MESSAGE_EXPIRY", "GROUP_EXPIRY", "ENCRYPTION_KEYS"):
        monkeypatch.delenv(f"CHANNELAPP_{name}", raising=False)
    settings = Settings(
        redis_urls=["redis://a:6379/0", "redis://b:6379/0"],
        redis_password="pw",
        key_prefix="channelapp.ns.mysite",
    )
    project = {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [("127.0.0.1", 6379)], "capacity": 300, "expiry": 10, "foo": 1},
    }
    config = channels_project.layer_config(settings, project)
    assert config == {
        "BACKEND": "channelapp.channels.RedisChannelLayer",
        "CONFIG": {
            "capacity": 300,
            "expiry": 10,
            "hosts": ["redis://:pw@a:6379/0", "redis://:pw@b:6379/0"],
            "prefix": "channelapp.ns.mysite",
        },
    }
    monkeypatch.setenv("CHANNELAPP_CHANNEL_CAPACITY", "5000")
    settings = Settings.from_env(settings)
    assert channels_project.layer_config(settings, project)["CONFIG"]["capacity"] == 5000


def test_an_asgi_target_must_name_a_callable() -> None:
    with pytest.raises(AppLoadError, match=r"package\.module:attribute"):
        load_asgi("asgi:nomodule")
    with pytest.raises(AppLoadError, match="cannot import"):
        load_asgi("no_such_module_here:app")
    with pytest.raises(AppLoadError, match="not an ASGI application"):
        load_asgi("channelapp.settings:DEVELOPMENT_SECRET_KEY")
    target = "tests.support.asgi_apps:_refuses_to_start"
    assert load_asgi(f"asgi:{target}") is load_asgi(target)


def command(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "channelapp", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_commands_refuse_in_one_line() -> None:
    done = command("asgi", "no_such_module_here:app")
    assert done.returncode == 2
    assert "cannot import 'no_such_module_here'" in done.stderr
    # runworker consumes through a Channels project's ChannelNameRouter: an ASGI app that is
    # no Channels project is refused.
    done = command("runworker", "tests.support.asgi_apps:_refuses_to_start", "thumbnails")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "channelapp runworker: 'tests.support.asgi_apps:_refuses_to_start' is not a Channels "
        "project (it configured no Django settings with Channels)"
    ]
