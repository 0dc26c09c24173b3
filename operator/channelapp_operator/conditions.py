"""Status conditions in the Kubernetes convention (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None = None,
    now: str | None = None,
) -> list[Condition]:
    """New list with ``type_`` set; lastTransitionTime moves (to ``now``, by default the
    clock's time) only when the status flips."""
    value = "Unknown" if status is None else ("True" if status else "False")
    previous = get_condition(conditions, type_)
    moved = previous is None or previous.get("status") != value
    updated: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            (now or now_iso()) if moved or previous is None else previous.get("lastTransitionTime")
        ),
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    if previous is None:
        return [*conditions, updated]
    return [updated if c is previous else c for c in conditions]


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)
