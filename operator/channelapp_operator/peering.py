"""Whether the kopf peering object this operator meets its peers in exists.

Without it kopf pauses the operator and only says so at INFO level, so an
operator installed without its peering (or run with the default ``--peering``
next to no chart) would look ready while doing nothing. This check makes that
loud: an ERROR line every minute and ``/readyz`` failing until the object exists.
"""

from __future__ import annotations

import asyncio
import logging
import time

from channelapp_operator.api_errors import describe
from channelapp_operator.kube import Kube

log = logging.getLogger("channelapp.operator")

CHECK_INTERVAL = 5.0
REPEAT_LOG = 60.0


def peering_paths(name: str, namespaces: list[str]) -> list[str]:
    """API paths of the peering objects kopf uses: one cluster-wide, or one per namespace."""
    if not namespaces:
        return [f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}"]
    return [f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{name}" for ns in namespaces]


class PeeringCheck:
    def __init__(self, kube: Kube, name: str, namespaces: list[str]) -> None:
        self.kube = kube
        self.name = name
        self.paths = peering_paths(name, namespaces)
        self.missing: list[str] = []
        self.checked = False
        self._logged_at = 0.0

    def ok(self) -> bool:
        return self.checked and not self.missing

    def check_once(self) -> None:
        missing = []
        for path in self.paths:
            try:
                found = self.kube.exists(path)
            except Exception as exc:
                log.warning("peering check %s failed: %s", path, describe(exc))
                continue
            if not found:
                missing.append(path)
        now = time.monotonic()
        if missing and (missing != self.missing or now - self._logged_at >= REPEAT_LOG):
            log.error(
                "peering object %r is missing (%s): kopf pauses this operator, so no app is "
                "reconciled or scaled and /readyz fails. Install it (the chart's "
                "templates/peering.yaml) or run a single operator with --standalone",
                self.name,
                ", ".join(missing),
            )
            self._logged_at = now
        elif not missing and self.missing:
            log.warning("peering object %r found: the operator resumes", self.name)
        self.missing = missing
        self.checked = True

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.check_once)
            await asyncio.sleep(CHECK_INTERVAL)
