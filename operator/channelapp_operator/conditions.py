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
) -> list[Condition]:
    """New list with ``type_`` set; lastTransitionTime moves only when the status flips."""
    value = "Unknown" if status is None else ("True" if status else "False")
    out: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            out.append(cond)
            continue
        found = True
        changed = cond.get("status") != value
        out.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now_iso() if changed else cond.get("lastTransitionTime"),
                **({"observedGeneration": generation} if generation is not None else {}),
            }
        )
    if not found:
        out.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now_iso(),
                **({"observedGeneration": generation} if generation is not None else {}),
            }
        )
    return out


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)
