"""Helpers for the ASGI statistics extension's figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from channelapp.layer.common import ChannelStatistics, ShardUnavailable, WorkerReport


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


@dataclass
class LoadReading:
    """One autoscaler read: channel statistics, live worker reports, unreachable shards."""

    channels: dict[str, ChannelStatistics] = field(default_factory=dict)
    workers: dict[str, WorkerReport] = field(default_factory=dict)
    failures: list[ShardUnavailable] = field(default_factory=list)


def live_reports(
    server_time: tuple[int, int], raw: Mapping[bytes | str, bytes | str]
) -> dict[str, WorkerReport]:
    """Reports from the workers hash that have not expired by the server's clock ``server_time``.

    A malformed entry is skipped: it can only come from another writer of the key.
    """
    now_ms = int(server_time[0]) * 1000 + int(server_time[1]) // 1000
    out: dict[str, WorkerReport] = {}
    for key, value in raw.items():
        worker = key.decode() if isinstance(key, bytes) else key
        text = value.decode() if isinstance(value, bytes) else value
        try:
            expires, in_flight, handled, busy, concurrency = text.split()
            if int(expires) < now_ms:
                continue
            out[worker] = {
                "in_flight": int(in_flight),
                "handled": int(handled),
                "busy_seconds": float(busy),
                "concurrency": int(concurrency),
            }
        except ValueError:
            continue
    return out
