"""Drift between a child as built and as it is in the cluster, and putting it back.

The API server adds defaults to what the operator applies, so a child has not
drifted while every field of the built manifest is still there with the same
value. Lists must keep their length and order (containers, ports, env).
:func:`contains` and :func:`drifted` are pure; :func:`correct_drift` re-applies a
changed child or re-creates a deleted one, with a Warning Event on the app.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf

from channelapp_operator import builders, metrics, migrate
from channelapp_operator import names as n
from channelapp_operator.api_errors import describe
from channelapp_operator.app_index import AppEntry, app_entry
from channelapp_operator.apply_children import reconcile_children
from channelapp_operator.ownership import controlled_by
from channelapp_operator.runtime import OperatorRuntime

log = logging.getLogger("channelapp.operator")

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


def _desired_child(entry: AppEntry, namespace: str, app: str, kind: str, child: str) -> Any:
    try:
        manifests = builders.children(app, namespace, entry.uid, entry.spec)
    except builders.SpecRefused:
        return None  # the reconcile handler says why
    for manifest in manifests:
        if manifest["kind"] == kind and manifest["metadata"]["name"] == child:
            return manifest
    return None


def _app_is_live(runtime: OperatorRuntime, namespace: str, app: str, uid: str) -> bool:
    """The app still exists as this uid and is not being deleted (children then go too)."""
    current = runtime.kube.get(n.KIND, namespace, app)
    if current is None:
        return False
    meta = current.get("metadata") or {}
    return meta.get("uid") == uid and not meta.get("deletionTimestamp")


def _restore(runtime: OperatorRuntime, namespace: str, app: str, entry: AppEntry) -> bool:
    """Re-create a deleted child; False when the app is going away too."""
    if not _app_is_live(runtime, namespace, app, entry.uid):
        return False
    current = runtime.kube.get(n.KIND, namespace, app) or {}
    status = current.get("status") or {}
    reconcile_children(runtime.kube, app, namespace, entry.uid, entry.spec, status)
    return True


def _reapply(
    runtime: OperatorRuntime, manifest: dict[str, Any], live: dict[str, Any], uid: str
) -> bool:
    """Apply the built manifest over a changed child; True when the server changed it back."""
    before = (live.get("metadata") or {}).get("resourceVersion")
    after = (runtime.kube.apply_owned(manifest, uid).get("metadata") or {}).get("resourceVersion")
    return before != after


async def correct_drift(
    runtime: OperatorRuntime,
    kind: str,
    event_type: str | None,
    body: kopf.Body,
    namespace: str,
    index: kopf.Index[Any, Any],
) -> None:
    """Put a changed or deleted child back as its app's spec builds it, with an Event."""
    meta = body.get("metadata") or {}
    app = str((meta.get("labels") or {}).get(n.LABEL_APP) or "")
    child = str(meta.get("name") or "")
    entry = app_entry(index, namespace, app) if app else None
    if entry is None or not child or not runtime.scope.serves(namespace):
        return
    if not entry.applied:
        return  # a new spec is being applied: children differ from it by design
    if not controlled_by(body, entry.uid):
        return  # only children this app controls are put back
    async with runtime.apps.get(namespace, app).drift_lock:
        manifest = _desired_child(entry, namespace, app, kind, child)
        if manifest is None:
            return  # no longer wanted (stale children are removed by reconcile)
        if event_type != "DELETED" and migrate.held_worker(kind, child, app, entry.spec, body):
            return  # its new template waits for the migration (the reconcile handler's)
        try:
            if event_type == "DELETED":
                done = await asyncio.to_thread(_restore, runtime, namespace, app, entry)
                what = "deleted outside the operator: re-created"
            elif drifted(manifest, dict(body)):
                done = await asyncio.to_thread(_reapply, runtime, manifest, dict(body), entry.uid)
                what = "changed outside the operator: the app's spec re-applied"
            else:
                return
        except Exception as exc:
            log.warning("%s/%s: correcting %s/%s failed: %s", namespace, app, kind, child,
                        describe(exc))  # fmt: skip
            return
    if not done:
        return
    message = f"{kind}/{child} {what}"
    log.warning("%s/%s: %s", namespace, app, message)
    metrics.DRIFT_CORRECTIONS.labels(namespace, app, kind).inc()
    ref = {
        "apiVersion": f"{n.GROUP}/{n.VERSION}",
        "kind": n.KIND,
        "metadata": {"name": app, "namespace": namespace, "uid": entry.uid},
    }
    # kopf posts an Event for any object reference: a dict of the app's fields serves.
    kopf.event(cast(kopf.Body, ref), type="Warning", reason="DriftCorrected", message=message)
