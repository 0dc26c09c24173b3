"""``channelapp protocol`` and ``channelapp worker`` refuse unsafe or broken settings with one
line on stderr and status 2, before serving anything (real processes, real sockets)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.processes import ROOT

CHAT = "channelapp.examples.chat:app"
KEY = "a-secret-of-our-own"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELAPP_")}
    return subprocess.run(
        [sys.executable, "-m", "channelapp", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("role", ["protocol", "worker"])
def test_no_redis_urls_is_refused(role: str) -> None:
    refused(run(role, CHAT, CHANNELAPP_SECRET_KEY=KEY), "CHANNELAPP_REDIS_URLS", "channelapp dev")


@pytest.mark.parametrize("role", ["protocol", "worker"])
def test_the_development_secret_key_is_refused(role: str) -> None:
    result = run(role, CHAT, CHANNELAPP_REDIS_URLS="redis://127.0.0.1:1/0")
    refused(result, "CHANNELAPP_SECRET_KEY")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:6379/0", "redis://"),
        ("redis://127.0.0.1:notaport/0", "notaport"),
        ("redis://127.0.0.1:99999/0", "99999"),
    ],
)
def test_a_malformed_redis_url_is_one_line(url: str, says: str) -> None:
    refused(run("worker", CHAT, CHANNELAPP_REDIS_URLS=url, CHANNELAPP_SECRET_KEY=KEY), says)


def test_a_malformed_setting_is_one_line() -> None:
    result = run(
        "protocol",
        CHAT,
        CHANNELAPP_REDIS_URLS="redis://127.0.0.1:1/0",
        CHANNELAPP_SECRET_KEY=KEY,
        CHANNELAPP_CHANNEL_CAPACITY="lots",
    )
    refused(result, "CHANNELAPP_CHANNEL_CAPACITY")


def test_a_port_in_use_is_one_line(busy_port: int) -> None:
    env = {"CHANNELAPP_REDIS_URLS": "redis://127.0.0.1:1/0", "CHANNELAPP_SECRET_KEY": KEY}
    refused(run("protocol", CHAT, "--port", str(busy_port), **env), str(busy_port), "in use")
    refused(run("worker", CHAT, "--metrics-port", str(busy_port), **env), str(busy_port), "in use")


def test_a_port_out_of_range_is_refused_by_the_parser() -> None:
    result = run("protocol", CHAT, "--port", "99999")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "0..65535" in result.stderr
