"""Drift between a child as built and as it is in the cluster (pure functions).

The API server adds defaults to what the operator applies, so a child has not
drifted while every field of the built manifest is still there with the same
value. Lists must keep their length and order (containers, ports, env).
"""

from __future__ import annotations

from typing import Any

# Fields the operator does not own on a live object, or that the server rewrites.
_IGNORED_METADATA = {"ownerReferences"}


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds every field and value of ``desired``."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(contains(a, b) for a, b in zip(live, desired, strict=True))
    # The server keeps quantities and env values as strings: 1 and "1" are the same.
    return bool(live == desired) or str(live) == str(desired)


def drifted(desired: dict[str, Any], live: dict[str, Any]) -> bool:
    """True when ``live`` lost or changed a field of the built manifest ``desired``."""
    meta = {k: v for k, v in (desired.get("metadata") or {}).items() if k not in _IGNORED_METADATA}
    meta.pop("name", None)
    meta.pop("namespace", None)
    if not contains(live.get("metadata") or {}, meta):
        return True
    return not contains(live.get("spec") or {}, desired.get("spec") or {})
