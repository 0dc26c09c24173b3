"""The newest recent FailedCreate Event explains a StatefulSet's refused pods (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from channelapp_operator.admission import latest_refusal

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def event(reason: str, at: str, message: str) -> dict[str, str]:
    return {"reason": reason, "lastTimestamp": at, "message": message}


def test_newest_recent_failed_create_wins() -> None:
    events = [
        event("FailedCreate", "2026-01-01T11:58:00Z", "forbidden: violates PodSecurity"),
        event("FailedCreate", "2026-01-01T11:59:30Z", "forbidden: exceeded quota"),
        event("SuccessfulCreate", "2026-01-01T11:59:50Z", "create Pod x-0"),
    ]
    assert latest_refusal(events, NOW) == "forbidden: exceeded quota"


def test_old_or_unrelated_events_are_not_a_reason() -> None:
    assert latest_refusal([event("FailedCreate", "2026-01-01T10:00:00Z", "old")], NOW) is None
    assert latest_refusal([event("SuccessfulCreate", "2026-01-01T11:59:00Z", "ok")], NOW) is None
    assert latest_refusal([event("FailedCreate", "", "no time")], NOW) is None
