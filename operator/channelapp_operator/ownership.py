"""Whose an object is: the operator changes or deletes only what its app controls.

A child is applied only while it is absent or its controller ownerReference
is the ChannelApp's UID. Anything else of that kind and name (an admin's
Service, another app's child) is left exactly as it is, and the app says so
with the reason ``ChildExists``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CHILD_EXISTS = "ChildExists"


class ChildExists(Exception):
    """An object the app would create exists and is not controlled by the app.

    The message (status, Events: readable by the app's author) names the object
    only; :attr:`owner` (its controller, for the operator's log) is not in it.
    """

    def __init__(self, kind: str, name: str, owner: str | None) -> None:
        self.kind = kind
        self.name = name
        self.owner = owner
        super().__init__(
            f"{kind}/{name} exists and is not this app's; the app does not change or use it "
            f"(rename the app, or remove that object)"
        )

    def log_detail(self) -> str:
        whose = f"controlled by {self.owner}" if self.owner else "not controlled by any owner"
        return f"{self.kind}/{self.name} is {whose}"


def controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's controller ownerReference, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    ref = controller(obj)
    return ref is not None and bool(uid) and ref.get("uid") == uid


def owner_description(obj: Mapping[str, Any]) -> str | None:
    """``Kind/name (uid)`` of the controller, or None when nothing controls the object."""
    ref = controller(obj)
    if ref is None:
        return None
    return f"{ref.get('kind', '?')}/{ref.get('name', '?')} (uid {ref.get('uid', '?')})"


def refusal(kind: str, obj: Mapping[str, Any]) -> ChildExists:
    name = str((obj.get("metadata") or {}).get("name", "?"))
    return ChildExists(kind, name, owner_description(obj))
