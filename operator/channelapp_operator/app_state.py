"""What the operator keeps about each ChannelApp between handler calls, in one place.

The reconcile handler records a failed apply here and the app's poll loop reads it:
while the children cannot be applied, ``Degraded`` and ``Ready`` say why
(``ApplyFailed``, ``ChildExists``, a refused spec) instead of the shards' health.
Drift corrections of one app take its lock, one at a time. When the app's loop
ends, the app is forgotten.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

APPLY_FAILED = "ApplyFailed"


@dataclass
class AppState:
    # (reason, message) of the last failed apply, until an apply succeeds.
    apply_failure: tuple[str, str] | None = None
    drift_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # What a Warning or Normal Event was posted for, by reason (a migration's Job, a change
    # of shard set): posted once each.
    notices: dict[str, str] = field(default_factory=dict)


class AppRegistry:
    """Every app's :class:`AppState`, by (namespace, name); created on first use."""

    def __init__(self) -> None:
        self._apps: dict[tuple[str, str], AppState] = {}

    def get(self, namespace: str, name: str) -> AppState:
        return self._apps.setdefault((namespace, name), AppState())

    def forget(self, namespace: str, name: str) -> None:
        self._apps.pop((namespace, name), None)
