"""kopf registrations: reconcile on create/update/resume, index children, supervise each app."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import kopf

from channelapp_operator import builders, metrics
from channelapp_operator import names as n
from channelapp_operator.children_status import Workload
from channelapp_operator.conditions import set_condition
from channelapp_operator.kube import Kube
from channelapp_operator.supervisor import AppSupervisor

log = logging.getLogger("channelapp.operator")

HEARTBEAT = metrics.Heartbeat()
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Watches that silently stop delivering events (nolar/kopf#204, #1276) are
    # cut by the server and the client and restarted.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    # Handler progress and the last-handled spec live in annotations: the
    # status schema is structural and would prune kopf's own fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=n.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=n.GROUP, key="last-handled-configuration"
    )
    # Events are posted explicitly, with reasons; handler log lines stay in the log.
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60


# --- reconcile ------------------------------------------------------------------------------


def _ensure_secret(name: str, namespace: str, uid: str) -> bool:
    manifest = builders.secret(
        name, namespace, uid, secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    )
    return kube().create(manifest)


def _remove_stale(name: str, namespace: str, spec: dict[str, Any]) -> list[str]:
    removed = []
    for kind, component in builders.stale_children(spec):
        child = n.redis_name(name) if component == n.REDIS else name
        if kube().delete(kind, namespace, child):
            removed.append(f"{kind}/{child}")
    return removed


def reconcile_children(name: str, namespace: str, uid: str, spec: dict[str, Any]) -> list[str]:
    """Apply every child; returns what was created or changed, for the Event."""
    created_secret = _ensure_secret(name, namespace, uid)
    worker = n.worker_name(name)
    worker_exists = kube().get("Deployment", namespace, worker) is not None
    applied = []
    for manifest in builders.children(name, namespace, uid, spec):
        if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == worker:
            if not worker_exists:
                # Created at minReplicas; from then on spec.replicas belongs to the autoscaler.
                initial = int((spec.get("workers") or {}).get("minReplicas", 1))
                manifest["spec"]["replicas"] = initial
                kube().apply(manifest)
                kube().scale_workers(namespace, worker, initial)
                applied.append(f"Deployment/{worker}")
                continue
        kube().apply(manifest)
        applied.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
    applied += [f"deleted {r}" for r in _remove_stale(name, namespace, spec)]
    if created_secret:
        applied.insert(0, f"Secret/{n.secret_name(name)}")
    return applied


@kopf.on.resume(n.GROUP, n.VERSION, n.PLURAL)
@kopf.on.create(n.GROUP, n.VERSION, n.PLURAL)
@kopf.on.update(n.GROUP, n.VERSION, n.PLURAL, field="spec")
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str,
    uid: str,
    meta: kopf.Meta,
    status: kopf.Status,
    reason: str,
    **_: Any,
) -> None:
    HEARTBEAT.beat()
    try:
        applied = await asyncio.to_thread(reconcile_children, name, namespace, uid, dict(spec))
    except Exception as exc:
        metrics.RECONCILES.labels("error").inc()
        conditions = set_condition(
            list(status.get("conditions") or []),
            "Degraded",
            True,
            "ApplyFailed",
            f"applying children failed: {exc}"[:1000],
            meta.get("generation"),
        )
        await asyncio.to_thread(kube().patch_status, namespace, name, {"conditions": conditions})
        kopf.event(body, type="Warning", reason="ApplyFailed", message=str(exc)[:1000])
        raise kopf.TemporaryError(f"applying children failed: {exc}", delay=5) from exc
    metrics.RECONCILES.labels("ok").inc()
    await asyncio.to_thread(
        kube().patch_status, namespace, name, {"observedGeneration": meta.get("generation")}
    )
    verb = {"create": "Created", "update": "Updated", "resume": "Resumed"}.get(
        str(reason), "Applied"
    )
    kopf.event(
        body,
        type="Normal",
        reason=verb,
        message=f"applied generation {meta.get('generation')}: {', '.join(applied)}",
    )


# --- children indexes -----------------------------------------------------------------------

_MANAGED = {n.LABEL_MANAGED_BY: n.MANAGER}


def _index_entry(
    namespace: str, labels: kopf.Labels, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta
) -> dict[Any, Any]:
    app = labels.get(n.LABEL_APP)
    component = labels.get(n.LABEL_COMPONENT)
    if not app or not component:
        return {}
    return {
        (namespace, app): (component, Workload.from_object(dict(spec), dict(status), dict(meta)))
    }


@kopf.index("apps", "v1", "deployments", labels=_MANAGED)
def app_deployments(
    namespace: str,
    labels: kopf.Labels,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[Any, Any]:
    return _index_entry(namespace, labels, spec, status, meta)


@kopf.index("apps", "v1", "statefulsets", labels=_MANAGED)
def app_statefulsets(
    namespace: str,
    labels: kopf.Labels,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[Any, Any]:
    return _index_entry(namespace, labels, spec, status, meta)


def workloads_of(namespace: str, name: str, *indexes: kopf.Index[Any, Any]) -> dict[str, Workload]:
    found: dict[str, Workload] = {}
    for index in indexes:
        for component, workload in index.get((namespace, name), []):
            found[component] = workload
    return found


# --- supervise ------------------------------------------------------------------------------


@kopf.daemon(n.GROUP, n.VERSION, n.PLURAL, cancellation_timeout=10.0)
async def supervise(
    body: kopf.Body,
    name: str,
    namespace: str,
    stopped: kopf.DaemonStopped,
    app_deployments: kopf.Index[Any, Any],
    app_statefulsets: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Poll the app's shards and keep workers and status in line until the app goes away."""

    def post(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    sup = AppSupervisor(namespace, name, kube(), post)
    log.info("supervising %s/%s", namespace, name)
    try:
        while not stopped:
            HEARTBEAT.beat()
            interval = float(
                (body.get("spec", {}).get("workers") or {}).get("pollIntervalSeconds", 1)
            )
            try:
                await sup.tick(
                    body, workloads_of(namespace, name, app_deployments, app_statefulsets)
                )
            except Exception:
                log.exception("supervising %s/%s: tick failed", namespace, name)
            await stopped.wait(interval)
    finally:
        await sup.close()
        metrics.forget(namespace, name)
