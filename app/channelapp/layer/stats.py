"""Helpers for the ASGI statistics extension's figures."""

from __future__ import annotations

from collections.abc import Iterable

from channelapp.layer.base import ChannelStatistics


def empty_stats() -> ChannelStatistics:
    return {
        "messages_pending": 0,
        "messages_max_age": 0.0,
        "messages_count": 0,
        "channel_full_count": 0,
    }


def total(items: Iterable[ChannelStatistics]) -> ChannelStatistics:
    """Sum counts and pending; the age is the oldest of all."""
    out = empty_stats()
    for s in items:
        out["messages_pending"] += s["messages_pending"]
        out["messages_count"] += s["messages_count"]
        out["channel_full_count"] += s["channel_full_count"]
        out["messages_max_age"] = max(out["messages_max_age"], s["messages_max_age"])
    return out
