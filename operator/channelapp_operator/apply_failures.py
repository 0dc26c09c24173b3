"""The last failed apply of each app, shared by the reconcile handler and the app's poll loop.

While an app's children cannot be applied, its ``Degraded`` condition says why;
the poll loop, which rewrites conditions every time they change, keeps that
reason instead of overwriting it with the shards' health.
"""

from __future__ import annotations

_FAILURES: dict[tuple[str, str], str] = {}


def record(namespace: str, name: str, message: str) -> None:
    _FAILURES[(namespace, name)] = message


def clear(namespace: str, name: str) -> None:
    _FAILURES.pop((namespace, name), None)


def get(namespace: str, name: str) -> str | None:
    return _FAILURES.get((namespace, name))
