"""``channelapp protocol`` and ``channelapp worker`` refuse unsafe or broken settings with one
line on stderr and status 2, before serving anything (real processes, real sockets)."""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from channelapp.settings import NON_NEGATIVE, POSITIVE, Settings, check_values
from channelapp.startup import StartupError, check_split_settings

from devtools.processes import ROOT

CHAT = "channelapp.examples.chat:app"
KEY = "a-secret-of-our-own-Zq8LmK3vT9xW"


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
    "key",
    [
        "",
        " " * 40,
        " \t\n\r\x0b\x0c" * 8,
        "a",
        "...",
        "a-secret-of-our-own",  # 19 bytes
        "x" * 64,
        "abcabcabcabcabcabcabcabcabcabcabcabc",  # 3 different characters
        "0123456" * 6,  # 7 different characters
        "please-change-this-secret-key-now",
        "replace-me-with-a-real-secret-key",
        "abcdefgh" * 4,
        "01234567" * 4,
        "é" * 4 + "abcdefgh" * 3,
        "12345678901234567890123456789012",
        "django-insecure-" + "k3Vq9zLm2xR8tW4pN7bY6cF1hJ5sD0gA",
    ],
)
def test_weak_secret_keys_are_refused(key: str) -> None:
    settings = Settings(redis_urls=["redis://127.0.0.1:1/0"], secret_key=key)
    with pytest.raises(StartupError, match="CHANNELAPP_SECRET_KEY") as caught:
        check_split_settings(settings, "worker")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "key", [KEY, secrets.token_urlsafe(48), secrets.token_urlsafe(32), "é" * 4 + KEY]
)
def test_strong_enough_secret_keys_are_accepted(key: str) -> None:
    check_split_settings(Settings(redis_urls=["redis://127.0.0.1:1/0"], secret_key=key), "worker")


@pytest.mark.parametrize("role", ["protocol", "worker"])
@pytest.mark.parametrize("key", ["...", "a", " " * 40])
def test_a_weak_secret_key_is_one_line(role: str, key: str) -> None:
    result = run(
        role, CHAT, CHANNELAPP_REDIS_URLS="redis://127.0.0.1:1/0", CHANNELAPP_SECRET_KEY=key
    )
    refused(result, "CHANNELAPP_SECRET_KEY")


NONSENSE: list[tuple[str, Any]] = [
    ("max_frame_size", -5),
    ("max_frame_size", 0),  # aiohttp reads 0 as "no limit"
    ("max_body_size", -1),
    ("channel_capacity", 0),
    ("reply_capacity", -1),
    ("send_buffer_size", 0),
    ("worker_concurrency", 0),
    ("worker_concurrency", 2.5),
    ("response_timeout", 0.0),
    ("response_timeout", -1.0),
    ("read_timeout", math.nan),
    ("read_timeout", math.inf),
    ("message_expiry", 0.0),
    ("group_expiry", -math.inf),
    ("session_ttl", math.nan),
    ("park_timeout", 0.0),
    ("worker_report_interval", 0.0),
    ("worker_report_ttl", math.inf),
    ("shutdown_timeout", -1.0),
    ("shutdown_timeout", math.nan),
    ("drain_seconds", -1.0),
    ("drain_seconds", math.inf),
    ("drain_seconds", math.nan),
    ("max_body_size", True),
]


@pytest.mark.parametrize(
    ("secure", "samesite"), [(False, "lax"), (True, "Sometimes"), (True, ""), (False, "None")]
)
def test_nonsense_cookie_settings_are_refused(secure: bool, samesite: str) -> None:
    settings = Settings(session_cookie_secure=secure, session_cookie_samesite=samesite)
    with pytest.raises(ValueError, match="CHANNELAPP_SESSION_COOKIE_SAMESITE="):
        check_values(settings)


@pytest.mark.parametrize(("name", "value"), NONSENSE)
def test_nonsense_numeric_settings_are_refused(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"CHANNELAPP_{name.upper()}="):
        check_values(dataclasses.replace(Settings(), **{name: value}))


def test_sensible_numeric_settings_are_accepted() -> None:
    check_values(Settings())
    check_values(Settings(shutdown_timeout=0.0, read_timeout=0.25, max_body_size=1))
    check_values(Settings(drain_seconds=0.0))
    check_values(Settings.from_env(environ={"CHANNELAPP_DRAIN_SECONDS": "30"}))


def test_every_numeric_setting_is_checked() -> None:
    numeric = {
        f.name
        for f in dataclasses.fields(Settings)
        if isinstance(f.default, int | float) and not isinstance(f.default, bool)
    }
    assert numeric == set(POSITIVE) | set(NON_NEGATIVE)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_FRAME_SIZE", "-5"),
        ("MAX_BODY_SIZE", "-1"),
        ("RESPONSE_TIMEOUT", "0"),
        ("READ_TIMEOUT", "nan"),
        ("SESSION_TTL", "inf"),
    ],
)
def test_nonsense_numeric_settings_are_one_line(variable: str, value: str) -> None:
    env = {
        "CHANNELAPP_REDIS_URLS": "redis://127.0.0.1:1/0",
        "CHANNELAPP_SECRET_KEY": KEY,
        f"CHANNELAPP_{variable}": value,
    }
    refused(run("protocol", CHAT, **env), f"CHANNELAPP_{variable}={value}")
    refused(run("dev", CHAT, **env), f"CHANNELAPP_{variable}={value}")


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
