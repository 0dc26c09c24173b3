"""One Redis server's shard: how sends are folded into script calls, and how many messages a
call refused after a failover carried (what the log line and the count report)."""

from __future__ import annotations

from typing import Any

from channelapp.layer.shard import SCRIPTS, SendBatcher, _messages_carried


def _send(channel: str, item: bytes) -> tuple[str, list[Any], list[Any], Any]:
    keys = [f"p:ch:{channel}", "p:sent", "p:full", "p:channels"]
    args = [item, 100, 60, channel]
    return "send", keys, args, None  # the caller's future: folding does not look at it


def _commands(calls: list[tuple[str, list[Any], list[Any]]]) -> list[tuple[Any, ...]]:
    return [("EVALSHA", SCRIPTS[n][1], len(k), *k, *a) for n, k, a in calls]


def test_sends_of_one_round_trip_fold_into_one_call_that_carries_each() -> None:
    batch = [_send("a", b"1"), _send("b", b"2"), _send("a", b"3"), _send("c", b"4")]
    calls, slots = SendBatcher._coalesce(batch)
    assert [c[0] for c in calls] == ["send_batch"]
    assert slots == [(0, 0), (0, 1), (0, 2), (0, 3)]
    # A refused batch of four sends is four messages refused, not one.
    assert [_messages_carried(c) for c in _commands(calls)] == [4]


def test_other_calls_carry_one() -> None:
    calls = [("group_members", ["p:group:g"], [0]), ("send_many", ["p:ch:a", "p:ch:b"], [b"x"])]
    assert [_messages_carried(c) for c in _commands(calls)] == [1, 1]
