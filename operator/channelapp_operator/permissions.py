"""Whether the operator still holds the permissions it acts with; ``/readyz`` follows it.

An operator whose role shrank while it runs would otherwise stay ready while its
status writes, applies and peering keep-alives get 403. The check asks the API
server (SelfSubjectAccessReview) at start, every ``recheck`` seconds (RECHECK by default), and soon after
any call of the operator was refused with 403.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channelapp_operator import names as n
from channelapp_operator.api_errors import describe

log = logging.getLogger("channelapp.operator")

RECHECK = 60.0  # seconds between full checks
POLL = 2.0  # seconds between looks at the 403 counter


@dataclass(frozen=True)
class Need:
    group: str
    resource: str
    verb: str
    subresource: str = ""

    def __str__(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {what}.{self.group}" if self.group else f"{self.verb} {what}"


# The calls every reconcile and poll makes; the chart's role grants each of them.
NEEDS: tuple[Need, ...] = (
    Need(n.GROUP, n.PLURAL, "patch"),
    Need(n.GROUP, n.PLURAL, "patch", "status"),
    Need("apps", "deployments", "patch"),
    Need("apps", "statefulsets", "patch"),
    Need("", "services", "patch"),
    Need("policy", "poddisruptionbudgets", "patch"),
    Need("", "secrets", "get"),
    Need("", "secrets", "create"),
    Need("", "events", "create"),
)


def needs_for(namespaces: list[str], peering: str | None) -> list[tuple[str, Need]]:
    """(namespace, need) pairs; namespace "" is cluster-wide."""
    scopes = namespaces or [""]
    out = [(ns, need) for ns in scopes for need in NEEDS]
    if peering is not None:
        plural = "kopfpeerings" if namespaces else "clusterkopfpeerings"
        out += [(ns, Need("kopf.dev", plural, "patch")) for ns in scopes]
    return out


def review(namespace: str, need: Need) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "group": need.group,
        "resource": need.resource,
        "verb": need.verb,
    }
    if need.subresource:
        attributes["subresource"] = need.subresource
    if namespace:
        attributes["namespace"] = namespace
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }


Reviewer = Callable[[dict[str, Any]], dict[str, Any]]


class PermissionCheck:
    """``ok()`` is False from a denied check until a check finds every permission again."""

    def __init__(
        self,
        reviewer: Reviewer,
        needs: list[tuple[str, Need]],
        forbidden_count: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
        recheck: float = RECHECK,
    ) -> None:
        self.reviewer = reviewer
        self.recheck = recheck
        self.needs = needs
        self.forbidden_count = forbidden_count
        self.clock = clock
        self.missing: list[str] = []
        self.checked = False
        self._checked_at = float("-inf")
        self._seen_forbidden = 0

    def ok(self) -> bool:
        return self.checked and not self.missing

    def check_once(self) -> None:
        missing = []
        for namespace, need in self.needs:
            try:
                answer = self.reviewer(review(namespace, need))
            except Exception as exc:
                log.warning("permission check (%s) failed: %s", need, describe(exc))
                missing.append(f"{need} (not checked: {describe(exc)})")
                continue
            if not (answer.get("status") or {}).get("allowed"):
                where = f" in namespace {namespace}" if namespace else " cluster-wide"
                missing.append(f"{need}{where}")
        if missing and missing != self.missing:
            log.error("the operator lacks permissions: %s; /readyz fails", ", ".join(missing))
        elif not missing and self.missing:
            log.warning("the operator's permissions are back: /readyz passes")
        self.missing = missing
        self.checked = True
        self._checked_at = self.clock()

    def due(self) -> bool:
        """A full check is due: never checked, ``recheck`` seconds passed, or a call met a new 403."""
        forbidden = self.forbidden_count()
        if forbidden != self._seen_forbidden:
            self._seen_forbidden = forbidden
            return True
        return not self.checked or self.clock() - self._checked_at >= self.recheck

    async def run(self) -> None:
        while True:
            if self.due():
                await asyncio.to_thread(self.check_once)
            await asyncio.sleep(POLL)
