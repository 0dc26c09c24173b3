"""Per-channel capacity: the default, glob and regex overrides, first match wins."""

from __future__ import annotations

import re

import pytest
from channelapp.layer.capacity import CapacityPolicy

OVERRIDES: dict[str | re.Pattern[str], int] = {
    "http.request": 10,
    "websocket.*": 20,
    re.compile(r"jobs\.\d+$"): 30,
    "jobs.*": 40,
    "exact?": 50,
}


@pytest.mark.parametrize(
    ("channel", "want"),
    [
        ("http.request", 10),
        ("http.request.body?abc", 100),  # a glob matches the whole name
        ("http.requestX", 100),
        ("websocket.receive", 20),
        ("websocket.", 20),
        ("websocket", 100),
        ("jobs.12", 30),  # the regex comes first
        ("jobs.12a", 40),  # the regex refuses it ($), the glob takes it
        ("jobs.", 40),
        ("xjobs.1", 100),  # a regex is matched from the start
        ("exact1", 50),
        ("exact", 100),
        ("exact12", 100),
        ("other", 100),
        ("", 100),
    ],
)
def test_overrides(channel: str, want: int) -> None:
    policy = CapacityPolicy(100, OVERRIDES)
    assert policy(channel) == want
    assert policy(channel) == want  # the cached answer is the same


def test_first_match_wins_in_order() -> None:
    assert CapacityPolicy(5, {"a.*": 1, "a.b": 2})("a.b") == 1
    assert CapacityPolicy(5, {"a.b": 2, "a.*": 1})("a.b") == 2


@pytest.mark.parametrize("default", [0, -1])
def test_default_must_be_positive(default: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CapacityPolicy(default)


def test_no_overrides() -> None:
    assert CapacityPolicy(1)("anything") == 1
    assert CapacityPolicy(7, None)("x") == 7


def test_the_cache_is_bounded_and_stays_right() -> None:
    policy = CapacityPolicy(3, {"hot.*": 9})
    for i in range(10_050):
        assert policy(f"hot.{i}" if i % 2 else f"cold.{i}") == (9 if i % 2 else 3)
    assert len(policy._cache) <= 10_001
    assert policy("hot.x") == 9 and policy("cold.x") == 3
