"""Apply an app's children as its spec builds them (used by reconcile and by drift repair)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from channelapp_operator import builders, migrate
from channelapp_operator import names as n
from channelapp_operator.api_errors import ChildApplyError
from channelapp_operator.kube import Kube
from channelapp_operator.ownership import ChildExists, controlled_by, refusal


def _ensure_secret(kube: Kube, name: str, namespace: str, uid: str) -> bool:
    """Create the app's Secret once; an existing one must be the app's (else ChildExists)."""
    manifest = builders.secret(
        name, namespace, uid, secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    )
    return kube.create_owned(manifest, uid)


def _remove_stale(
    kube: Kube, name: str, namespace: str, uid: str, spec: dict[str, Any]
) -> list[str]:
    """Delete children the spec no longer wants, only where this app (``uid``) controls them."""
    removed = []
    for kind, component in builders.stale_children(spec):
        child = n.stale_child_name(name, component)
        if kube.delete_owned(kind, namespace, child, uid):
            removed.append(f"{kind}/{child}")
    return removed


def _apply_child(
    kube: Kube,
    manifest: dict[str, Any],
    spec: dict[str, Any],
    uid: str,
    worker: str,
    worker_exists: bool,
) -> None:
    if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == worker:
        if not worker_exists:
            # Created at minReplicas; from then on spec.replicas belongs to the autoscaler.
            initial = int((spec.get("workers") or {}).get("minReplicas", 1))
            manifest["spec"]["replicas"] = initial
            kube.apply_owned(manifest, uid)
            kube.scale_workers(manifest["metadata"]["namespace"], worker, initial)
            return
    kube.apply_owned(manifest, uid)


def _check_absent_or_owned(
    kube: Kube, namespace: str, uid: str, manifests: list[dict[str, Any]]
) -> None:
    """Refuse before changing anything when any child belongs to someone else."""
    for manifest in manifests:
        live = kube.lookup(manifest["kind"], namespace, manifest["metadata"]["name"])
        if live is not None and not controlled_by(live, uid):
            raise refusal(manifest["kind"], live)


def reconcile_children(
    kube: Kube,
    name: str,
    namespace: str,
    uid: str,
    spec: dict[str, Any],
    status: Mapping[str, Any] | None = None,
) -> list[str]:
    """Apply every child; returns what was created or changed, for the Event."""
    return apply_app(kube, name, namespace, uid, spec, status or {})[0]


def apply_app(
    kube: Kube,
    name: str,
    namespace: str,
    uid: str,
    spec: dict[str, Any],
    status: Mapping[str, Any],
    keep_shards: int | None = None,
) -> tuple[list[str], migrate.Migration]:
    """Apply every child, the worker Deployment only once ``spec.migrate`` ran for this
    spec (see :mod:`migrate`); returns what was created or changed, and the migration.
    ``keep_shards``: managed Redis shards kept beyond the spec's while they drain
    (see :mod:`reshard`).

    Raises ChildExists, and changes nothing, when a child's name is taken by an
    object this app does not control; SpecRefused when the spec cannot be built.
    """
    manifests = builders.children(name, namespace, uid, spec)
    secret = builders.secret(name, namespace, uid, "", "")
    _check_absent_or_owned(kube, namespace, uid, [secret, *manifests])
    created_secret = _ensure_secret(kube, name, namespace, uid)
    worker = n.worker_name(name)
    try:
        migration = migrate.gate(kube, name, namespace, uid, spec, status)
    except ChildExists:
        raise
    except Exception as exc:
        raise ChildApplyError("running the migration Job", exc) from exc
    worker_exists = kube.get("Deployment", namespace, worker) is not None
    applied = []
    if migration.phase == migrate.RUNNING and migration.job:
        applied.append(f"Job/{migration.job} (migrating)")
    for manifest in manifests:
        child = f"{manifest['kind']}/{manifest['metadata']['name']}"
        is_worker = manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == worker
        if is_worker and not migration.workers_may_roll:
            continue  # the workers keep their template until the migration succeeded
        if is_worker and migration.digest:
            manifest["metadata"]["annotations"] = {migrate.ANNOTATION: migration.digest}
        if keep_shards and child == f"StatefulSet/{n.redis_name(name)}":
            # Each shard's pods have consecutive ordinals: the retiring shards' are the last.
            pods = keep_shards * (builders.redis_replicas(spec) + 1)
            manifest["spec"]["replicas"] = max(int(manifest["spec"].get("replicas", 1)), pods)
        try:
            _apply_child(kube, manifest, spec, uid, worker, worker_exists)
        except ChildExists:
            raise
        except Exception as exc:
            raise ChildApplyError(f"applying {child}", exc) from exc
        applied.append(child)
    applied += [f"deleted {r}" for r in _remove_stale(kube, name, namespace, uid, spec)]
    if created_secret:
        applied.insert(0, f"Secret/{n.secret_name(name)}")
    return applied, migration
