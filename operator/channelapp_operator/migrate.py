"""Migrations before rollout: ``spec.migrate`` runs as a Job of the new image, and the
worker Deployment's new template is applied only once that Job succeeded.

The Job is named ``<app>-migrate-<digest>``, the digest being the first 8 hex digits of
a SHA-256 over what the command sees (image, app, migrate, env). Names cannot collide
between apps: the suffix has a fixed length, so ``A-migrate-H1 == B-migrate-H2`` only when
``A == B`` and ``H1 == H2`` (the longest app name, 46 characters, gives a 63-character
name, the limit of the ``job-name`` label of its pods). Within an app, two specs whose
digests agree on 32 bits would share a Job: a migration already run is not run again.

A worker Deployment applied after a migration carries the digest in an annotation; a
reconcile that finds it there needs no Job (the operator restarted, the Job was cleaned).
A failed Job keeps the old workers serving: the app is ``Degraded`` (``MigrationFailed``)
with the last line of the Job's log, recorded in ``status.migration`` so that the Job is
not run again until the spec changes (a new digest). Running, the app is ``Progressing``
(``Migrating``). The app's older Jobs are deleted once a newer one is created or succeeds.

Nothing here but :func:`gate`, :func:`last_log_line` and :func:`delete_older_jobs` talks
to the cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channelapp_operator import builders
from channelapp_operator import names as n
from channelapp_operator.api_errors import describe
from channelapp_operator.kube import Kube
from channelapp_operator.redis_urls import redact_text

log = logging.getLogger("channelapp.operator")

ANNOTATION = f"{n.GROUP}/migration"
DIGEST_LENGTH = 8
MESSAGE_LIMIT = 500

RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
NOT_NEEDED = "NotNeeded"

MIGRATING = "Migrating"
MIGRATION_FAILED = "MigrationFailed"


def digest(spec: Mapping[str, Any]) -> str | None:
    """The digest of what the migration command sees; None when the spec has no migrate."""
    command = spec.get("migrate")
    if not command:
        return None
    material = {
        "image": spec.get("image"),
        "app": spec.get("app"),
        "migrate": list(command),
        "env": list(spec.get("env") or []),
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def job_name(app: str, digest_: str) -> str:
    return f"{app}-migrate-{digest_}"


def job_phase(job: Mapping[str, Any]) -> str:
    """Running, Succeeded or Failed, from the Job's conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if str(cond.get("status")) != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return SUCCEEDED
        if cond.get("type") in ("Failed", "FailureTarget"):
            return FAILED
    return RUNNING


def job_failure(job: Mapping[str, Any]) -> str:
    """Why the Job failed, from its conditions (when no log line can be read)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget") and str(cond.get("status")) == "True":
            return f"{cond.get('reason') or 'Failed'}: {cond.get('message') or 'the Job failed'}"
    return "the Job failed"


def one_line(text: str) -> str:
    """The last line of ``text`` that is not indented (a traceback's exception, not the
    indented continuation of its message), else the last non-empty one; secrets redacted,
    at most MESSAGE_LIMIT long."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    flush = [line for line in lines if not line[0].isspace()]
    line = (flush or lines)[-1].strip()
    return redact_text(line)[:MESSAGE_LIMIT]


@dataclass(frozen=True)
class Migration:
    """Where the app's migration stands for its current spec."""

    phase: str  # NotNeeded, Running, Succeeded or Failed
    job: str = ""
    digest: str = ""
    message: str = ""

    @property
    def workers_may_roll(self) -> bool:
        """The worker Deployment's template may be applied."""
        return self.phase in (NOT_NEEDED, SUCCEEDED)

    def record(self) -> dict[str, Any] | None:
        """``status.migration`` (None: remove it)."""
        if self.phase == NOT_NEEDED and not self.digest:
            return None
        return {
            "job": self.job,
            "digest": self.digest,
            "phase": SUCCEEDED if self.phase == NOT_NEEDED else self.phase,
            "message": self.message,
        }


def decide(
    digest_: str | None,
    worker_digest: str | None,
    record: Mapping[str, Any] | None,
    job: Mapping[str, Any] | None,
) -> str:
    """What to do for this spec (pure): NotNeeded, Create (the Job), Running, Succeeded or
    Failed.

    ``worker_digest`` is the annotation of the live worker Deployment, ``record`` the
    app's ``status.migration``, ``job`` the live Job of this digest (or None).
    """
    if digest_ is None:
        return NOT_NEEDED
    if worker_digest == digest_:
        return NOT_NEEDED  # the workers run this spec already: it was migrated
    if job is not None:
        return job_phase(job)
    record = record or {}
    if record.get("digest") == digest_ and record.get("phase") in (FAILED, SUCCEEDED):
        # The Job is gone (cleaned after it finished): its outcome stands.
        return str(record["phase"])
    return "Create"


def conditions_for(
    record: Mapping[str, Any] | None, spec: Mapping[str, Any]
) -> tuple[str, str] | None:
    """(reason, message) the status shows for the migration of ``spec`` (pure): Migrating
    or MigrationFailed; None when it holds nothing back."""
    if not record:
        return None
    current = digest(spec)
    if current is None or record.get("digest") != current:
        return None
    job = record.get("job") or "the migration Job"
    if record.get("phase") == RUNNING:
        return (MIGRATING, f"Job {job} runs spec.migrate; the workers keep the previous spec")
    if record.get("phase") == FAILED:
        line = str(record.get("message") or "the Job failed")
        return (MIGRATION_FAILED, f"Job {job} failed: {line}"[:1000])
    return None


def held_worker(kind: str, child: str, app: str, spec: Mapping[str, Any], live: Any) -> bool:
    """A live worker Deployment not yet migrated to ``spec``: its template is the reconcile
    handler's to change (drift correction leaves it)."""
    if kind != "Deployment" or child != n.worker_name(app):
        return False
    wanted = digest(spec)
    if wanted is None:
        return False
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(ANNOTATION) != wanted)


def last_log_line(kube: Kube, namespace: str, job: Mapping[str, Any]) -> str:
    """The last line of the Job's newest pod's log; the Job's own reason when none is read."""
    name = str((job.get("metadata") or {}).get("name") or "")
    try:
        pods = kube.list_labelled("Pod", namespace, f"job-name={name}")
        pods.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        for pod in reversed(pods):
            pod_name = str(pod["metadata"]["name"])
            line = one_line(kube.pod_log_tail(namespace, pod_name, builders.MIGRATE))
            if line:
                return line
    except Exception as exc:
        log.info("%s: the migration's log was not read: %s", namespace, describe(exc))
    return one_line(job_failure(job)) or "the Job failed"


def delete_older_jobs(kube: Kube, app: str, namespace: str, uid: str, keep: str) -> list[str]:
    """Delete the app's migration Jobs but ``keep`` (and their pods); the names deleted."""
    selector = ",".join(f"{k}={v}" for k, v in n.selector(app, builders.MIGRATE).items())
    deleted = []
    for job in kube.list_labelled("Job", namespace, selector):
        name = str(job["metadata"]["name"])
        if name != keep and kube.delete_owned("Job", namespace, name, uid):
            deleted.append(name)
    return deleted


def worker_digest(kube: Kube, namespace: str, app: str) -> str | None:
    live = kube.get("Deployment", namespace, n.worker_name(app))
    if live is None:
        return None
    return ((live.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)


def gate(
    kube: Kube, app: str, namespace: str, uid: str, spec: Mapping[str, Any],
    status: Mapping[str, Any],
) -> Migration:  # fmt: skip
    """Where the migration of ``spec`` stands; creates its Job when it has none yet."""
    digest_ = digest(spec)
    if digest_ is None:
        return Migration(NOT_NEEDED)
    name = job_name(app, digest_)
    job = kube.get("Job", namespace, name)
    record = status.get("migration")
    action = decide(digest_, worker_digest(kube, namespace, app), record, job)
    if action == NOT_NEEDED:
        return Migration(NOT_NEEDED, name, digest_)
    if action == "Create":
        manifest = builders.migrate_job(app, namespace, uid, dict(spec), name, digest_)
        kube.create_owned(manifest, uid)
        delete_older_jobs(kube, app, namespace, uid, keep=name)
        return Migration(RUNNING, name, digest_)
    if action == SUCCEEDED:
        delete_older_jobs(kube, app, namespace, uid, keep=name)
        return Migration(SUCCEEDED, name, digest_)
    if action == FAILED:
        same = record if (record or {}).get("digest") == digest_ else None
        if same and same.get("phase") == FAILED and same.get("message"):
            return Migration(FAILED, name, digest_, str(same["message"]))
        message = last_log_line(kube, namespace, job) if job is not None else "the Job failed"
        return Migration(FAILED, name, digest_, message)
    return Migration(RUNNING, name, digest_)
