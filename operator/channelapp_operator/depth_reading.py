"""One reading of an app's queue depth across its shards, as the poll loop observed it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DepthReading:
    depth: int = 0
    oldest_age: float = 0.0
    unreachable: list[str] = field(default_factory=list)
    error: str | None = None
    sent: int = 0
    workers: dict[str, Any] = field(default_factory=dict)
    # Shards dialled without success (None: the read failed as a whole, every shard).
    failed_urls: list[str] | None = None
    reason: str = "ShardUnreachable"  # the Degraded reason when the read failed
    # Not a shard's fault: the app's own Secret is still being created, the shards wait
    # for the shared dial budget, or the spec is refused and they are not dialled.
    pending: bool = False
    # The class each shard of a read that failed as a whole is listed with in status.
    error_class: str = "unreachable"

    @property
    def ok(self) -> bool:
        return self.error is None and not self.unreachable
