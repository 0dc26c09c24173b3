"""Status conditions: set, replace in place, and a transition time that moves only on a flip."""

from __future__ import annotations

import re
from typing import Any

import pytest
from channelapp_operator.conditions import get_condition, now_iso, set_condition

OLD = "2020-01-01T00:00:00Z"


def ready(status: str, reason: str = "R", when: str = OLD, **extra: Any) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": "m",
            "lastTransitionTime": when, **extra}  # fmt: skip


def test_now_iso_is_utc_seconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now_iso())


@pytest.mark.parametrize(("status", "want"), [(True, "True"), (False, "False"), (None, "Unknown")])
def test_status_values(status: bool | None, want: str) -> None:
    (got,) = set_condition([], "Ready", status, "Because", "said")
    assert got["status"] == want
    assert (got["type"], got["reason"], got["message"]) == ("Ready", "Because", "said")
    assert got["lastTransitionTime"] != OLD and "observedGeneration" not in got


@pytest.mark.parametrize(
    ("before", "status", "moved"),
    [
        ("True", True, False),  # same status, new reason: the time stays
        ("True", False, True),
        ("False", None, True),
        ("Unknown", None, False),
        ("Unknown", True, True),
    ],
)
def test_transition_time_moves_only_on_a_flip(
    before: str, status: bool | None, moved: bool
) -> None:
    (got,) = set_condition([ready(before)], "Ready", status, "Other", "new message")
    assert (got["lastTransitionTime"] != OLD) is moved, got
    assert (got["reason"], got["message"]) == ("Other", "new message")


def test_replaced_in_place_others_untouched_and_input_not_mutated() -> None:
    other = {"type": "Degraded", "status": "False", "reason": "OK", "message": "",
             "lastTransitionTime": OLD}  # fmt: skip
    conditions = [other, ready("True")]
    snapshot = [dict(c) for c in conditions]
    got = set_condition(conditions, "Ready", False, "Down", "x", generation=7)
    assert conditions == snapshot
    assert [c["type"] for c in got] == ["Degraded", "Ready"]
    assert got[0] is other
    assert got[1]["observedGeneration"] == 7 and got[1]["status"] == "False"


def test_a_new_type_is_appended() -> None:
    got = set_condition([ready("True")], "Scaling", True, "Steady", "ok", generation=0)
    assert [c["type"] for c in got] == ["Ready", "Scaling"]
    assert got[1]["observedGeneration"] == 0


@pytest.mark.parametrize(
    ("conditions", "type_", "want"),
    [
        ([], "Ready", None),
        ([ready("True")], "Ready", 0),
        ([ready("True")], "ready", None),  # types are case-sensitive
        ([{"status": "True"}, ready("False")], "Ready", 1),
        ([ready("True"), ready("False")], "Ready", 0),  # the first one wins
    ],
)
def test_get_condition(conditions: list[dict[str, Any]], type_: str, want: int | None) -> None:
    got = get_condition(conditions, type_)
    assert got is (None if want is None else conditions[want])
