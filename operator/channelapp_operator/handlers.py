"""kopf registrations: reconcile on create/update/resume, index children, correct drift,
supervise each app.

Every handler takes the operator's :class:`~channelapp_operator.runtime.OperatorRuntime`
as kopf's ``memo`` (``__main__`` passes it to ``kopf.operator``); the work itself is
done by the modules the handlers call.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from typing import Any

import kopf

from channelapp_operator import builders, metrics, migrate, reshard
from channelapp_operator import names as n
from channelapp_operator.api_errors import ChildApplyError, describe
from channelapp_operator.app_index import AppEntry, app_entry, workloads_of
from channelapp_operator.app_state import APPLY_FAILED
from channelapp_operator.apply_children import apply_app
from channelapp_operator.children_status import Workload
from channelapp_operator.conditions import set_condition
from channelapp_operator.decide import poll_interval
from channelapp_operator.drift import correct_drift
from channelapp_operator.no_finalizer import without_finalizer
from channelapp_operator.ownership import CHILD_EXISTS, ChildExists
from channelapp_operator.redis_urls import redact_text
from channelapp_operator.runtime import OperatorRuntime
from channelapp_operator.scope import PEERING_LABEL
from channelapp_operator.supervisor import AppSupervisor, Cadence, app_phase, paced

log = logging.getLogger("channelapp.operator")


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
def configure(settings: kopf.OperatorSettings, memo: OperatorRuntime, **_: Any) -> None:
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
    settings.peering.lifetime = memo.config.peering_lifetime


# --- reconcile ------------------------------------------------------------------------------


def served(namespace: str | None, memo: OperatorRuntime, **_: Any) -> bool:
    """kopf filter: False in a namespace a namespace-scoped release took (see scope.py)."""
    return memo.scope.serves(namespace)


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
    memo: OperatorRuntime,
    **_: Any,
) -> None:
    current = dict(status)
    try:
        shards = await reshard.plan(memo.kube, name, namespace, uid, dict(spec), current)
        applied, migration = await asyncio.to_thread(
            apply_app, memo.kube, name, namespace, uid, shards.spec, current, shards.keep_shards
        )
    except Exception as exc:
        metrics.RECONCILES.labels("error").inc()
        if isinstance(exc, ChildExists):
            why = CHILD_EXISTS
            # Whose the object is stays in the operator's log: status is the author's to read.
            log.warning("%s/%s: %s", namespace, name, exc.log_detail())
        elif isinstance(exc, builders.SpecRefused):
            why = exc.reason
        else:
            why = APPLY_FAILED
        if isinstance(exc, ChildApplyError | ChildExists | builders.SpecRefused):
            message = str(exc)
        else:
            message = describe(exc)
        message = redact_text(message)
        await _report_apply_failure(memo, body, namespace, name, meta, status, message, why)
        # Retries back off (5 s doubling to 30 s); a fixed spec is applied by the next one.
        delay = min(30.0, 5.0 * 2 ** min(int(retry), 3))
        raise kopf.TemporaryError(message, delay=delay) from None
    app = memo.apps.get(namespace, name)
    previous = app.apply_failure
    if previous is not None:
        app.apply_failure = None
        memo.events.forget((namespace, name, previous[0]))  # a new failure is news again
        conditions = set_condition(
            list(status.get("conditions") or []),
            "Degraded",
            False,
            "Applied",
            "every child applied",
            meta.get("generation"),
        )
        await asyncio.to_thread(memo.kube.patch_status, namespace, name, {"conditions": conditions})
    metrics.RECONCILES.labels("ok").inc()
    records = {"dataShards": shards.record, "migration": migration.record()}
    await asyncio.to_thread(memo.kube.patch_status, namespace, name, records)
    _report_holds(memo, body, namespace, name, shards, migration)
    if shards.waiting is not None:
        # The shards are read again until the change can be applied.
        raise kopf.TemporaryError(shards.waiting, delay=RESHARD_RECHECK)
    if migration.phase == migrate.RUNNING:
        raise kopf.TemporaryError(f"waiting for Job {migration.job}", delay=MIGRATION_RECHECK)
    await asyncio.to_thread(
        memo.kube.patch_status, namespace, name, {"observedGeneration": meta.get("generation")}
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


# Seconds between two looks at a running migration Job, and at shards a change waits for.
MIGRATION_RECHECK = 3.0
RESHARD_RECHECK = 5.0


def _report_holds(
    memo: OperatorRuntime,
    body: kopf.Body,
    namespace: str,
    name: str,
    shards: reshard.Plan,
    migration: migrate.Migration,
) -> None:
    """Events for what holds the spec back (each posted once per migration or change) and
    for a change of shard set applied; the conditions follow from status (status.py)."""
    state = memo.apps.get(namespace, name)
    if shards.waiting is not None:
        change = f"{shards.record.get('shards')}:{shards.keep_shards}"
        if state.notices.get(reshard.RESHARD_WAITING) != change:
            state.notices[reshard.RESHARD_WAITING] = change
            log.warning("%s/%s: %s", namespace, name, shards.waiting)
            kopf.event(body, type="Warning", reason=reshard.RESHARD_WAITING,
                       message=shards.waiting[:1000])  # fmt: skip
    else:
        state.notices.pop(reshard.RESHARD_WAITING, None)
    if shards.done is not None:
        kopf.event(body, type="Normal", reason="Resharded", message=shards.done[:1000])
    if migration.phase == migrate.RUNNING:
        if state.notices.get(migrate.MIGRATING) != migration.job:
            state.notices[migrate.MIGRATING] = migration.job
            kopf.event(body, type="Normal", reason=migrate.MIGRATING,
                       message=f"Job {migration.job} runs spec.migrate before the workers roll")  # fmt: skip
    elif migration.phase == migrate.FAILED:
        if state.notices.get(migrate.MIGRATION_FAILED) != migration.job:
            state.notices[migrate.MIGRATION_FAILED] = migration.job
            message = f"Job {migration.job} failed, the workers keep the previous spec: "
            log.warning("%s/%s: %s%s", namespace, name, message, migration.message)
            kopf.event(body, type="Warning", reason=migrate.MIGRATION_FAILED,
                       message=(message + migration.message)[:1000])  # fmt: skip


async def _report_apply_failure(
    memo: OperatorRuntime,
    body: kopf.Body,
    namespace: str,
    name: str,
    meta: kopf.Meta,
    status: kopf.Status,
    message: str,
    reason: str = APPLY_FAILED,
) -> None:
    """Degraded=True and Ready=False with the reason and one line, logged, and a Warning
    Event unless just posted."""
    memo.apps.get(namespace, name).apply_failure = (reason, message)
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
        await asyncio.to_thread(memo.kube.patch_status, namespace, name, {"conditions": conditions})
    except Exception as exc:
        log.warning("%s/%s: status not written: %s", namespace, name, describe(exc))
    if memo.events.allow((namespace, name, reason), message):
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


# --- the apps themselves -------------------------------------------------------------------


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


# --- drift correction -----------------------------------------------------------------------


@kopf.on.event("apps", "v1", "deployments", labels=_MANAGED)
async def deployment_drift(
    type: str | None,
    body: kopf.Body,
    namespace: str,
    channel_apps: kopf.Index[Any, Any],
    memo: OperatorRuntime,
    **_: Any,
) -> None:
    await correct_drift(memo, "Deployment", type, body, namespace, channel_apps)


@kopf.on.event("apps", "v1", "statefulsets", labels=_MANAGED)
async def statefulset_drift(
    type: str | None,
    body: kopf.Body,
    namespace: str,
    channel_apps: kopf.Index[Any, Any],
    memo: OperatorRuntime,
    **_: Any,
) -> None:
    await correct_drift(memo, "StatefulSet", type, body, namespace, channel_apps)


@kopf.on.event("v1", "services", labels=_MANAGED)
async def service_drift(
    type: str | None,
    body: kopf.Body,
    namespace: str,
    channel_apps: kopf.Index[Any, Any],
    memo: OperatorRuntime,
    **_: Any,
) -> None:
    await correct_drift(memo, "Service", type, body, namespace, channel_apps)


# --- scope -----------------------------------------------------------------------------------


@kopf.on.event("kopf.dev", "v1", "kopfpeerings", labels=PEERING_LABEL)
def namespaced_release(
    type: str | None, name: str, namespace: str, memo: OperatorRuntime, **_: Any
) -> None:
    """A namespace-scoped release's peering object: a cluster-wide operator defers to it."""
    if not memo.scope.clusterwide:
        return
    if memo.scope.peering_seen(namespace, name, present=type != "DELETED"):
        if memo.scope.serves(namespace):
            log.warning("namespace %s: its namespaced operator left; acting here again", namespace)
        else:
            log.warning("namespace %s has its own operator (%s): leaving it alone", namespace, name)


# --- supervise ------------------------------------------------------------------------------


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
    memo: OperatorRuntime,
    **_: Any,
) -> None:
    """Poll the app's shards and keep workers and status in line until the app goes away."""

    def post(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    sup = AppSupervisor(
        namespace, name, memo.kube, post, shared_dials=memo.dials, apps=memo.apps,
        api=memo.api, status_interval=memo.config.status_interval,
    )  # fmt: skip
    loop = f"supervise {namespace}/{name}"
    log.info("supervising %s/%s", namespace, name)

    async def step() -> bool:
        entry = app_entry(channel_apps, namespace, name)
        if entry is None or entry.uid != uid:
            # Deleted: no finalizer holds the app back, so the daemon ends itself.
            log.info("%s/%s is gone: supervision ends", namespace, name)
            return False
        memo.heartbeat.beat(loop)
        if not memo.scope.serves(namespace):
            return True  # a namespace-scoped release acts here; stay idle until it goes
        try:
            await sup.tick(body, workloads_of(namespace, name, app_deployments, app_statefulsets))
        except Exception:
            log.exception("supervising %s/%s: tick failed", namespace, name)
        return True

    async def until_stopped() -> None:
        await stopped.wait()

    # One task per app waits for the stop, and each pause waits for that task with a timeout:
    # kopf's timed ``stopped.wait(n)`` ends each pause in a TimeoutError whose traceback is a
    # reference cycle, one per app per tick for the collector. A stop still ends the pause at
    # once, so the daemon exits by itself instead of being cancelled.
    stop = asyncio.ensure_future(until_stopped())

    async def pause(seconds: float) -> None:
        await asyncio.wait([stop], timeout=seconds)

    try:
        # Ticks on a fixed cadence at the app's own phase (see supervisor.Cadence).
        await paced(
            step,
            lambda: poll_interval(body.get("spec", {})),
            pause,
            lambda: bool(stopped),
            Cadence(app_phase(namespace, name)),
        )
    finally:
        stop.cancel()
        memo.heartbeat.done(loop)
        await sup.close()
        metrics.forget(namespace, name)
        memo.events.forget((namespace, name))
        memo.apps.forget(namespace, name)


without_finalizer(supervise)
