"""Pure parts of the kopf registrations: the poll-interval clamp, the daemon's finalizer."""

from __future__ import annotations

import kopf
import pytest
from channelapp_operator import handlers


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.1), (0.0001, 0.1), (-5, 0.1), (1, 1.0), (0.25, 0.25), (3600, 60.0), ("x", 1.0)],
)
def test_poll_interval_is_clamped(value: object, expected: float) -> None:
    assert handlers.poll_interval({"workers": {"pollIntervalSeconds": value}}) == expected


def test_poll_interval_default_and_nan() -> None:
    assert handlers.poll_interval({}) == 1.0
    assert handlers.poll_interval({"workers": {"pollIntervalSeconds": float("nan")}}) == 1.0


def test_no_handler_puts_a_finalizer_on_apps() -> None:
    registry = kopf.get_default_registry()
    spawning = registry._spawning._handlers
    assert any(h.fn is handlers.supervise for h in spawning)
    assert not any(h.requires_finalizer for h in spawning)
    assert not any(h.requires_finalizer for h in registry._changing._handlers)
