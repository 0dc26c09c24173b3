"""The last failed apply of each app, shared by the reconcile handler and the app's poll loop.

While an app's children cannot be applied, its ``Degraded`` and ``Ready``
conditions say why (``ApplyFailed``, ``ChildExists``, a refused spec); the poll
loop, which rewrites conditions every time they change, keeps that reason
instead of overwriting it with the shards' health.
"""

from __future__ import annotations

APPLY_FAILED = "ApplyFailed"

_FAILURES: dict[tuple[str, str], tuple[str, str]] = {}


def record(namespace: str, name: str, message: str, reason: str = APPLY_FAILED) -> None:
    _FAILURES[(namespace, name)] = (reason, message)


def clear(namespace: str, name: str) -> None:
    _FAILURES.pop((namespace, name), None)


def get(namespace: str, name: str) -> str | None:
    """The failure's message, or None."""
    found = _FAILURES.get((namespace, name))
    return found[1] if found else None


def failure(namespace: str, name: str) -> tuple[str, str] | None:
    """(reason, message) of the failure, or None."""
    return _FAILURES.get((namespace, name))
