"""kopf registrations: reconcile on create/update/resume, index children, supervise each app."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import secrets
from typing import Any

import kopf

from channelapp_operator import apply_failures, builders, dial_manners, metrics
from channelapp_operator import names as n
from channelapp_operator.api_errors import ChildApplyError, describe
from channelapp_operator.children_status import Workload
from channelapp_operator.conditions import set_condition
from channelapp_operator.drift import drifted
from channelapp_operator.event_limiter import EventLimiter
from channelapp_operator.kube import Kube
from channelapp_operator.ownership import CHILD_EXISTS, ChildExists, controlled_by, refusal
from channelapp_operator.redis_urls import redact_text
from channelapp_operator.scope import PEERING_LABEL, SCOPE
from channelapp_operator.supervisor import AppSupervisor

log = logging.getLogger("channelapp.operator")

HEARTBEAT = metrics.Heartbeat()
EVENTS = EventLimiter()
MIN_POLL_INTERVAL = 0.1
MAX_POLL_INTERVAL = 60.0
# Seconds a replica's peering record lives without keep-alive (set by __main__):
# a standby replica takes over this long after the active one died.
PEERING_LIFETIME = 60
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


class Utf8AnnotationsDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled spec annotation as UTF-8 JSON.

    kopf writes ASCII JSON, six bytes (twelve for an emoji) per character outside ASCII;
    the CRD's size budget for a spec counts on at most six bytes per character.
    """

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        encoded = json.dumps(essence, separators=(",", ":"), ensure_ascii=False) + "\n"
        for full_key in self.make_keys(self.key, body=body):
            patch.metadata.annotations[full_key] = encoded
        self._store_marker(prefix=self.prefix, patch=patch, body=body)


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
    settings.persistence.diffbase_storage = Utf8AnnotationsDiffBaseStorage(
        prefix=n.GROUP, key="last-handled-configuration"
    )
    # Events are posted explicitly, with reasons and rate-limited; kopf's own log
    # lines (a retried handler's error on every attempt) stay in the log.
    settings.posting.level = logging.CRITICAL
    settings.networking.request_timeout = 60
    settings.peering.lifetime = PEERING_LIFETIME


# --- reconcile ------------------------------------------------------------------------------


def _ensure_secret(name: str, namespace: str, uid: str) -> bool:
    """Create the app's Secret once; an existing one must be the app's (else ChildExists)."""
    manifest = builders.secret(
        name, namespace, uid, secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    )
    return kube().create_owned(manifest, uid)


def _remove_stale(name: str, namespace: str, uid: str, spec: dict[str, Any]) -> list[str]:
    """Delete children the spec no longer wants, only where this app (``uid``) controls them."""
    removed = []
    for kind, component in builders.stale_children(spec):
        child = n.redis_name(name) if component == n.REDIS else name
        if kube().delete_owned(kind, namespace, child, uid):
            removed.append(f"{kind}/{child}")
    return removed


def _apply_child(
    manifest: dict[str, Any], spec: dict[str, Any], uid: str, worker: str, worker_exists: bool
) -> None:
    if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == worker:
        if not worker_exists:
            # Created at minReplicas; from then on spec.replicas belongs to the autoscaler.
            initial = int((spec.get("workers") or {}).get("minReplicas", 1))
            manifest["spec"]["replicas"] = initial
            kube().apply_owned(manifest, uid)
            kube().scale_workers(manifest["metadata"]["namespace"], worker, initial)
            return
    kube().apply_owned(manifest, uid)


def _check_absent_or_owned(namespace: str, uid: str, manifests: list[dict[str, Any]]) -> None:
    """Refuse before changing anything when any child belongs to someone else."""
    for manifest in manifests:
        live = kube().lookup(manifest["kind"], namespace, manifest["metadata"]["name"])
        if live is not None and not controlled_by(live, uid):
            raise refusal(manifest["kind"], live)


def reconcile_children(name: str, namespace: str, uid: str, spec: dict[str, Any]) -> list[str]:
    """Apply every child; returns what was created or changed, for the Event.

    Raises ChildExists, and changes nothing, when a child's name is taken by an
    object this app does not control; SpecRefused when the spec cannot be built.
    """
    manifests = builders.children(name, namespace, uid, spec)
    secret = builders.secret(name, namespace, uid, "", "")
    _check_absent_or_owned(namespace, uid, [secret, *manifests])
    created_secret = _ensure_secret(name, namespace, uid)
    worker = n.worker_name(name)
    worker_exists = kube().get("Deployment", namespace, worker) is not None
    applied = []
    for manifest in manifests:
        child = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            _apply_child(manifest, spec, uid, worker, worker_exists)
        except ChildExists:
            raise
        except Exception as exc:
            raise ChildApplyError(f"applying {child}", exc) from exc
        applied.append(child)
    applied += [f"deleted {r}" for r in _remove_stale(name, namespace, uid, spec)]
    if created_secret:
        applied.insert(0, f"Secret/{n.secret_name(name)}")
    return applied


def served(namespace: str | None, **_: Any) -> bool:
    """kopf filter: False in a namespace a namespace-scoped release took (see scope.py)."""
    return SCOPE.serves(namespace)


@kopf.on.resume(n.GROUP, n.VERSION, n.PLURAL, when=served)
@kopf.on.create(n.GROUP, n.VERSION, n.PLURAL, when=served)
@kopf.on.update(n.GROUP, n.VERSION, n.PLURAL, field="spec", when=served)
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str,
    uid: str,
    meta: kopf.Meta,
    status: kopf.Status,
    reason: str,
    retry: int,
    **_: Any,
) -> None:
    try:
        applied = await asyncio.to_thread(reconcile_children, name, namespace, uid, dict(spec))
    except Exception as exc:
        metrics.RECONCILES.labels("error").inc()
        if isinstance(exc, ChildExists):
            why = CHILD_EXISTS
            # Whose the object is stays in the operator's log: status is the author's to read.
            log.warning("%s/%s: %s", namespace, name, exc.log_detail())
        elif isinstance(exc, builders.SpecRefused):
            why = exc.reason
        else:
            why = apply_failures.APPLY_FAILED
        if isinstance(exc, ChildApplyError | ChildExists | builders.SpecRefused):
            message = str(exc)
        else:
            message = describe(exc)
        message = redact_text(message)
        await _report_apply_failure(body, namespace, name, meta, status, message, why)
        # Retries back off (5 s doubling to 30 s); a fixed spec is applied by the next one.
        delay = min(30.0, 5.0 * 2 ** min(int(retry), 3))
        raise kopf.TemporaryError(message, delay=delay) from None
    previous = apply_failures.failure(namespace, name)
    if previous is not None:
        apply_failures.clear(namespace, name)
        EVENTS.forget((namespace, name, previous[0]))  # a new failure is news again
        conditions = set_condition(
            list(status.get("conditions") or []),
            "Degraded",
            False,
            "Applied",
            "every child applied",
            meta.get("generation"),
        )
        await asyncio.to_thread(kube().patch_status, namespace, name, {"conditions": conditions})
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


async def _report_apply_failure(
    body: kopf.Body,
    namespace: str,
    name: str,
    meta: kopf.Meta,
    status: kopf.Status,
    message: str,
    reason: str = apply_failures.APPLY_FAILED,
) -> None:
    """Degraded=True and Ready=False with the reason and one line, logged, and a Warning
    Event unless just posted."""
    apply_failures.record(namespace, name, message, reason)
    log.warning("%s/%s: %s", namespace, name, message)
    generation = meta.get("generation")
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(conditions, "Degraded", True, reason, message, generation)
    conditions = set_condition(conditions, "Ready", False, reason, message, generation)
    conditions = set_condition(
        conditions, "Progressing", False, reason, f"the spec is not applied: {message}",
        generation,
    )  # fmt: skip
    try:
        await asyncio.to_thread(kube().patch_status, namespace, name, {"conditions": conditions})
    except Exception as exc:
        log.warning("%s/%s: status not written: %s", namespace, name, describe(exc))
    if EVENTS.allow((namespace, name, reason), message):
        kopf.event(body, type="Warning", reason=reason, message=message)


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


# --- the apps themselves -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AppEntry:
    uid: str
    spec: dict[str, Any]
    generation: int = 0
    observed: int | None = None  # status.observedGeneration: the spec last applied

    @property
    def applied(self) -> bool:
        """The children were applied from this spec (no reconcile pending or failing)."""
        return self.observed == self.generation


@kopf.index(n.GROUP, n.VERSION, n.PLURAL)
def channel_apps(
    namespace: str,
    name: str,
    uid: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, AppEntry]:
    """Every app as last seen; an app leaves the index when it is deleted."""
    return {
        (namespace, name): AppEntry(
            uid,
            copy.deepcopy(dict(spec)),
            int(meta.get("generation") or 0),
            status.get("observedGeneration"),
        )
    }


def app_entry(index: kopf.Index[Any, Any], namespace: str, name: str) -> AppEntry | None:
    entries = list(index.get((namespace, name), []))
    return entries[-1] if entries else None


# --- drift correction -----------------------------------------------------------------------

_DRIFT_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}


def _desired_child(entry: AppEntry, namespace: str, app: str, kind: str, child: str) -> Any:
    try:
        manifests = builders.children(app, namespace, entry.uid, entry.spec)
    except builders.SpecRefused:
        return None  # the reconcile handler says why
    for manifest in manifests:
        if manifest["kind"] == kind and manifest["metadata"]["name"] == child:
            return manifest
    return None


def _app_is_live(namespace: str, app: str, uid: str) -> bool:
    """The app still exists as this uid and is not being deleted (children then go too)."""
    current = kube().get(n.KIND, namespace, app)
    if current is None:
        return False
    meta = current.get("metadata") or {}
    return meta.get("uid") == uid and not meta.get("deletionTimestamp")


def _restore(namespace: str, app: str, entry: AppEntry, kind: str, child: str) -> bool:
    """Re-create a deleted child; False when the app is going away too."""
    if not _app_is_live(namespace, app, entry.uid):
        return False
    reconcile_children(app, namespace, entry.uid, entry.spec)
    return True


def _reapply(manifest: dict[str, Any], live: dict[str, Any], uid: str) -> bool:
    """Apply the built manifest over a changed child; True when the server changed it back."""
    before = (live.get("metadata") or {}).get("resourceVersion")
    after = (kube().apply_owned(manifest, uid).get("metadata") or {}).get("resourceVersion")
    return before != after


async def correct_drift(
    kind: str,
    event_type: str | None,
    body: kopf.Body,
    namespace: str,
    index: kopf.Index[Any, Any],
) -> None:
    """Put a changed or deleted child back as its app's spec builds it, with an Event."""
    labels = body.get("metadata", {}).get("labels") or {}
    app = labels.get(n.LABEL_APP)
    child = body.get("metadata", {}).get("name")
    entry = app_entry(index, namespace, app) if app else None
    if entry is None or not child or not SCOPE.serves(namespace):
        return
    if not entry.applied:
        return  # a new spec is being applied: children differ from it by design
    if not controlled_by(body, entry.uid):
        return  # only children this app controls are put back
    lock = _DRIFT_LOCKS.setdefault((namespace, app), asyncio.Lock())
    async with lock:
        manifest = _desired_child(entry, namespace, app, kind, child)
        if manifest is None:
            return  # no longer wanted (stale children are removed by reconcile)
        try:
            if event_type == "DELETED":
                done = await asyncio.to_thread(_restore, namespace, app, entry, kind, child)
                what = "deleted outside the operator: re-created"
            elif drifted(manifest, dict(body)):
                done = await asyncio.to_thread(_reapply, manifest, dict(body), entry.uid)
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
    kopf.event(ref, type="Warning", reason="DriftCorrected", message=message)


@kopf.on.event("apps", "v1", "deployments", labels=_MANAGED)
async def deployment_drift(
    type: str | None, body: kopf.Body, namespace: str, channel_apps: kopf.Index[Any, Any], **_: Any
) -> None:
    await correct_drift("Deployment", type, body, namespace, channel_apps)


@kopf.on.event("apps", "v1", "statefulsets", labels=_MANAGED)
async def statefulset_drift(
    type: str | None, body: kopf.Body, namespace: str, channel_apps: kopf.Index[Any, Any], **_: Any
) -> None:
    await correct_drift("StatefulSet", type, body, namespace, channel_apps)


@kopf.on.event("v1", "services", labels=_MANAGED)
async def service_drift(
    type: str | None, body: kopf.Body, namespace: str, channel_apps: kopf.Index[Any, Any], **_: Any
) -> None:
    await correct_drift("Service", type, body, namespace, channel_apps)


# --- scope -----------------------------------------------------------------------------------


@kopf.on.event("kopf.dev", "v1", "kopfpeerings", labels=PEERING_LABEL)
def namespaced_release(type: str | None, name: str, namespace: str, **_: Any) -> None:
    """A namespace-scoped release's peering object: a cluster-wide operator defers to it."""
    if not SCOPE.clusterwide:
        return
    if SCOPE.peering_seen(namespace, name, present=type != "DELETED"):
        if SCOPE.serves(namespace):
            log.warning("namespace %s: its namespaced operator left; acting here again", namespace)
        else:
            log.warning("namespace %s has its own operator (%s): leaving it alone", namespace, name)


# --- supervise ------------------------------------------------------------------------------


def poll_interval(spec: Any) -> float:
    """The spec's poll interval, clamped: the CRD refuses out-of-range values, but an object
    stored before that rule (or with validation off) must not make the loop spin."""
    raw = (spec.get("workers") or {}).get("pollIntervalSeconds", 1)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = 1.0
    if value != value:  # NaN
        value = 1.0
    return max(MIN_POLL_INTERVAL, min(MAX_POLL_INTERVAL, value))


@kopf.daemon(n.GROUP, n.VERSION, n.PLURAL, cancellation_timeout=10.0)
async def supervise(
    body: kopf.Body,
    name: str,
    namespace: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    app_deployments: kopf.Index[Any, Any],
    app_statefulsets: kopf.Index[Any, Any],
    channel_apps: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Poll the app's shards and keep workers and status in line until the app goes away."""

    def post(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    sup = AppSupervisor(namespace, name, kube(), post, shared_dials=dial_manners.SHARED)
    loop = f"supervise {namespace}/{name}"
    log.info("supervising %s/%s", namespace, name)
    try:
        while not stopped:
            entry = app_entry(channel_apps, namespace, name)
            if entry is None or entry.uid != uid:
                # Deleted: no finalizer holds the app back, so the daemon ends itself.
                log.info("%s/%s is gone: supervision ends", namespace, name)
                return
            HEARTBEAT.beat(loop)
            if not SCOPE.serves(namespace):
                # A namespace-scoped release acts here; stay idle until it goes.
                await stopped.wait(poll_interval(body.get("spec", {})))
                continue
            try:
                await sup.tick(
                    body, workloads_of(namespace, name, app_deployments, app_statefulsets)
                )
            except Exception:
                log.exception("supervising %s/%s: tick failed", namespace, name)
            await stopped.wait(poll_interval(body.get("spec", {})))
    finally:
        HEARTBEAT.done(loop)
        await sup.close()
        metrics.forget(namespace, name)
        EVENTS.forget((namespace, name))
        apply_failures.clear(namespace, name)
        _DRIFT_LOCKS.pop((namespace, name), None)


def _without_finalizer(handler_fn: Any) -> None:
    """Let the daemon run without a finalizer on the app.

    kopf puts a finalizer on every object that has a daemon, so that it can stop the
    daemon before the object goes. Then, with the operator uninstalled, deleting an
    app or the CRD hangs on it. The children are owned through ownerReferences and
    the garbage collector removes them; the daemon notices the app left the index and
    ends itself. A finalizer left by an older operator is removed by kopf on resume.
    """
    registry = kopf.get_default_registry()
    spawning = registry._spawning  # no public switch for this in kopf
    for i, handler in enumerate(spawning._handlers):
        if handler.fn is handler_fn:
            spawning._handlers[i] = dataclasses.replace(handler, requires_finalizer=False)


_without_finalizer(supervise)
