"""Migrations before rollout as tables: the Job's name and manifest, what a reconcile does
for each state of the Job, the worker's annotation and the app's record, and the
conditions the status shows; then the operator against the control plane."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from channelapp_operator import builders, migrate
from channelapp_operator.children_status import Workload
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.status import StatusInputs, compute_status

from devtools.kube import KubeCluster
from devtools.operator import OperatorProcess, load_example
from devtools.polling import wait_for

SPEC: dict[str, Any] = {
    "image": "registry.example/chatsite:2",
    "app": "django:chatsite.settings",
    "migrate": ["python", "manage.py", "migrate", "--noinput"],
    "env": [{"name": "POSTGRES_HOST", "value": "pg"}],
    "redis": {"external": {"urls": ["redis://h0:6379/0"]}},
}
DIGEST = migrate.digest(SPEC)
assert DIGEST is not None


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"chat-migrate-{DIGEST}"},
        "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]},
    }


# --- the digest and the name --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"image": "registry.example/chatsite:3"}, False),
        ({"app": "django:other.settings"}, False),
        ({"migrate": ["python", "manage.py", "migrate"]}, False),
        ({"env": [{"name": "POSTGRES_HOST", "value": "pg2"}]}, False),
        ({"workers": {"maxReplicas": 30}}, True),  # what the command does not see
        ({"protocol": {"replicas": 4}}, True),
        ({"redis": {"managed": {"shards": 3}}}, True),
    ],
)
def test_digest_follows_what_the_command_sees(change: dict[str, Any], same: bool) -> None:
    assert (migrate.digest({**SPEC, **change}) == DIGEST) is same


def test_no_migrate_no_digest() -> None:
    assert migrate.digest({k: v for k, v in SPEC.items() if k != "migrate"}) is None
    assert migrate.digest({**SPEC, "migrate": []}) is None


def test_job_name_fits_the_label_limit_for_the_longest_app_name() -> None:
    app = "a" * 46  # the CRD's limit on metadata.name
    name = migrate.job_name(app, str(DIGEST))
    assert len(name) == 63
    assert len(DIGEST) == migrate.DIGEST_LENGTH


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("chat", "chat-migrate-0123abcd"),  # an app named like another app's Job
        ("chat-migrate", "chat"),
        ("x", "x-y"),
    ],
)
def test_job_names_of_two_apps_never_collide(a: str, b: str) -> None:
    digests = ["0123abcd", "ffffffff", str(DIGEST)]
    names_a = {migrate.job_name(a, d) for d in digests}
    names_b = {migrate.job_name(b, d) for d in digests}
    assert not names_a & names_b


# --- the Job ----------------------------------------------------------------------------------


def test_job_runs_the_command_with_the_workers_pod_settings() -> None:
    manifest = builders.migrate_job("chat", "ns", "uid-1", SPEC, "chat-migrate-x", "d1")
    worker = builders.worker_deployment("chat", "ns", "uid-1", SPEC)
    pod = manifest["spec"]["template"]["spec"]
    wpod = worker["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    (wc,) = wpod["containers"]
    assert manifest["kind"] == "Job" and manifest["apiVersion"] == "batch/v1"
    assert c["command"] == SPEC["migrate"]
    assert c["image"] == SPEC["image"] == wc["image"]
    # The app's env (Redis, key prefix, secret key, spec.env), as the worker has it.
    worker_env = [e for e in wc["env"] if not e["name"].startswith("CHANNELAPP_WORKER")]
    worker_env = [e for e in worker_env if e["name"] != "CHANNELAPP_SHUTDOWN_TIMEOUT"]
    assert c["env"] == worker_env
    assert c["securityContext"] == wc["securityContext"]
    assert pod["securityContext"] == wpod["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    job_spec = manifest["spec"]
    assert job_spec["backoffLimit"] <= 2
    assert job_spec["ttlSecondsAfterFinished"] > 0
    assert job_spec["activeDeadlineSeconds"] > 0
    (owner,) = manifest["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ChannelApp", "uid-1", True)
    assert manifest["metadata"]["annotations"] == {migrate.ANNOTATION: "d1"}


def test_job_runs_as_the_named_service_account_with_its_token() -> None:
    spec = {**SPEC, "serviceAccountName": "migrator"}
    pod = builders.migrate_job("chat", "ns", "u", spec, "j", "d")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "migrator"
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ((), migrate.RUNNING),
        ((("Complete", "True"),), migrate.SUCCEEDED),
        ((("SuccessCriteriaMet", "True"),), migrate.SUCCEEDED),
        ((("Failed", "True"),), migrate.FAILED),
        ((("FailureTarget", "True"),), migrate.FAILED),
        ((("Failed", "False"),), migrate.RUNNING),
        ((("Suspended", "True"),), migrate.RUNNING),
    ],
)
def test_job_phase(conditions: tuple[tuple[str, str], ...], phase: str) -> None:
    assert migrate.job_phase(job(*conditions)) == phase


# --- what a reconcile does ------------------------------------------------------------------


@dataclass
class GateCase:
    name: str
    digest: str | None = DIGEST
    worker: str | None = None  # the live worker's annotation
    record: dict[str, Any] | None = None
    job: dict[str, Any] | None = None
    want: str = ""


GATE_CASES = [
    GateCase("no spec.migrate: nothing to wait for", digest=None, want=migrate.NOT_NEEDED),
    GateCase("a new digest, no Job yet: create it", want="Create"),
    GateCase("workers already migrated to this spec", worker=DIGEST, want=migrate.NOT_NEEDED),
    GateCase(
        "workers of an older spec, Job running", worker="0ld0ld00", job=job(), want=migrate.RUNNING
    ),
    GateCase("Job complete", job=job(("Complete", "True")), want=migrate.SUCCEEDED),
    GateCase("Job failed", job=job(("Failed", "True")), want=migrate.FAILED),
    GateCase(
        "failed Job cleaned up: still failed, not run again",
        record={"digest": DIGEST, "phase": "Failed", "message": "boom"},
        want=migrate.FAILED,
    ),
    GateCase(
        "an older spec's failure: the new digest runs",
        record={"digest": "0ld0ld00", "phase": "Failed", "message": "boom"},
        want="Create",
    ),
    GateCase(
        "succeeded Job cleaned up before the workers rolled",
        record={"digest": DIGEST, "phase": "Succeeded"},
        want=migrate.SUCCEEDED,
    ),
]


@pytest.mark.parametrize("case", GATE_CASES, ids=lambda c: c.name)
def test_decide(case: GateCase) -> None:
    assert migrate.decide(case.digest, case.worker, case.record, case.job) == case.want


@pytest.mark.parametrize(
    ("phase", "rolls"),
    [
        (migrate.NOT_NEEDED, True),
        (migrate.SUCCEEDED, True),
        (migrate.RUNNING, False),
        (migrate.FAILED, False),
    ],
)
def test_workers_roll_only_after_the_migration(phase: str, rolls: bool) -> None:
    assert migrate.Migration(phase, "j", "d").workers_may_roll is rolls


def test_records() -> None:
    assert migrate.Migration(migrate.NOT_NEEDED).record() is None
    assert migrate.Migration(migrate.NOT_NEEDED, "j", "d").record() == {
        "job": "j",
        "digest": "d",
        "phase": "Succeeded",
        "message": "",
    }
    failed = migrate.Migration(migrate.FAILED, "j", "d", "django.db.utils.Error: x")
    assert failed.record() == {
        "job": "j",
        "digest": "d",
        "phase": "Failed",
        "message": "django.db.utils.Error: x",
    }


@pytest.mark.parametrize(
    ("log", "line"),
    [
        ("Operations to perform:\n  Apply all migrations\nValueError: bad\n\n", "ValueError: bad"),
        ("", ""),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1\n'
            "django.db.utils.OperationalError: connection to server failed: Network is "
            "unreachable\n\tIs the server running on that host?\n",
            "django.db.utils.OperationalError: connection to server failed: Network is unreachable",
        ),
        ("  only indented\n", "only indented"),
        ("x" * 900, "x" * migrate.MESSAGE_LIMIT),
        (
            "connecting to redis://:hunter2@h:6379/0 failed",
            "connecting to redis://:***@h:6379/0 failed",
        ),
    ],
)
def test_one_line_is_the_last_line_redacted_and_short(log: str, line: str) -> None:
    assert migrate.one_line(log) == line


def test_failure_reason_from_the_job_when_no_log_is_read() -> None:
    failed = {
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                },
            ]
        }
    }
    assert migrate.job_failure(failed) == (
        "BackoffLimitExceeded: Job has reached the specified backoff limit"
    )


@pytest.mark.parametrize(
    ("kind", "child", "annotation", "spec", "held"),
    [
        ("Deployment", "chat-worker", None, SPEC, True),
        ("Deployment", "chat-worker", "0ld0ld00", SPEC, True),
        ("Deployment", "chat-worker", DIGEST, SPEC, False),
        ("Deployment", "chat-protocol", None, SPEC, False),
        ("Service", "chat-worker", None, SPEC, False),
        (
            "Deployment",
            "chat-worker",
            None,
            {k: v for k, v in SPEC.items() if k != "migrate"},
            False,
        ),
    ],
)
def test_drift_leaves_a_worker_waiting_for_its_migration(
    kind: str, child: str, annotation: str | None, spec: dict[str, Any], held: bool
) -> None:
    live = {"metadata": {"annotations": {migrate.ANNOTATION: annotation} if annotation else {}}}
    assert migrate.held_worker(kind, child, "chat", spec, live) is held


# --- conditions -----------------------------------------------------------------------------


def rolled(replicas: int) -> Workload:
    return Workload(replicas, replicas, replicas, replicas, 1, 1)


@dataclass
class StatusCase:
    name: str
    record: dict[str, Any] | None
    want: dict[str, tuple[str, str, str]] = field(default_factory=dict)


JOB = f"chat-migrate-{DIGEST}"
STATUS_CASES = [
    StatusCase(
        "migrating: Progressing, the old workers serve",
        {"job": JOB, "digest": DIGEST, "phase": "Running", "message": ""},
        {
            "Progressing": (
                "True",
                "Migrating",
                f"Job {JOB} runs spec.migrate; the workers keep the previous spec",
            ),
            "Degraded": ("False", "AsExpected", "queue depth read from 1 shard(s)"),
            "Ready": ("True", "AllReplicasReady", "protocol servers, workers and shards are ready"),
        },
    ),
    StatusCase(
        "failed: Degraded MigrationFailed with the log line, never Ready",
        {"job": JOB, "digest": DIGEST, "phase": "Failed", "message": "ValueError: bad"},
        {
            "Degraded": ("True", "MigrationFailed", f"Job {JOB} failed: ValueError: bad"),
            "Ready": (
                "False",
                "MigrationFailed",
                f"children ready, but Job {JOB} failed: ValueError: bad",
            ),
            "Progressing": (
                "False",
                "MigrationFailed",
                f"the spec is not fully applied: Job {JOB} failed: ValueError: bad",
            ),
        },
    ),
    StatusCase(
        "a record of another spec holds nothing back",
        {"job": "chat-migrate-0ld0ld00", "digest": "0ld0ld00", "phase": "Failed", "message": "x"},
        {
            "Degraded": ("False", "AsExpected", "queue depth read from 1 shard(s)"),
            "Progressing": ("False", "RolloutComplete", "every child runs the latest spec"),
        },
    ),
    StatusCase(
        "succeeded",
        {"job": JOB, "digest": DIGEST, "phase": "Succeeded", "message": ""},
        {"Progressing": ("False", "RolloutComplete", "every child runs the latest spec")},
    ),
]


@pytest.mark.parametrize("case", STATUS_CASES, ids=lambda c: c.name)
def test_status(case: StatusCase) -> None:
    previous = {"migration": case.record} if case.record else {}
    out = compute_status(
        StatusInputs(
            name="chat",
            namespace="ns",
            spec=SPEC,
            generation=2,
            previous=previous,
            workloads={"protocol": rolled(2), "worker": rolled(1)},
            reading=DepthReading(depth=0),
            desired=1,
            now="2030-01-01T00:00:00Z",
        )
    )
    got = {c["type"]: (c["status"], c["reason"], c["message"]) for c in out["conditions"]}
    for type_, want in case.want.items():
        assert got[type_] == want, type_


# --- against the control plane ----------------------------------------------------------------


def _get(cluster: KubeCluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _condition(app: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (app.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def _jobs(cluster: KubeCluster, ns: str) -> list[dict[str, Any]]:
    found = cluster.kubectl_json(
        "get", "jobs", "-n", ns, "-l", "app.kubernetes.io/instance=chat,"
        "app.kubernetes.io/component=migrate",
    )  # fmt: skip
    return list(found["items"])


def _job_of(cluster: KubeCluster, ns: str, image: str) -> dict[str, Any] | None:
    for job in _jobs(cluster, ns):
        if job["spec"]["template"]["spec"]["containers"][0]["image"] == image:
            return job
    return None


def _worker_image(cluster: KubeCluster, ns: str) -> str | None:
    worker = _get(cluster, ns, "deployment", "chat-worker")
    if worker is None:
        return None
    return str(worker["spec"]["template"]["spec"]["containers"][0]["image"])


def _fail_pods(cluster: KubeCluster, ns: str, job: str) -> bool:
    """Mark the Job's unfinished pods Failed through the status subresource (kwok runs no
    container); True once the Job controller has marked the Job Failed."""
    pods = cluster.kubectl_json("get", "pods", "-n", ns, "-l", f"job-name={job}")["items"]
    for pod in pods:
        if pod["status"].get("phase") in ("Failed", "Succeeded"):
            continue
        status = {
            "phase": "Failed",
            "containerStatuses": [{
                "name": "migrate", "image": pod["spec"]["containers"][0]["image"],
                "imageID": "", "ready": False, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }],
        }  # fmt: skip
        cluster.kubectl(
            "patch", "pod", pod["metadata"]["name"], "-n", ns, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}), check=False,
        )  # fmt: skip
    live = _get(cluster, ns, "job", job) or {}
    return migrate.job_phase(live) == migrate.FAILED


def _set_image(cluster: KubeCluster, ns: str, image: str) -> None:
    patch = {"spec": {"image": image}}
    cluster.kubectl("patch", "channelapp", "chat", "-n", ns, "--type=merge",
                    "-p", json.dumps(patch))  # fmt: skip


@pytest.mark.cluster
def test_migration_job_runs_before_the_workers_and_a_failed_one_keeps_them(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """The migration Job of each new image runs before the worker template changes; a failed
    one leaves the old template serving and the app Degraded (MigrationFailed); the next
    image runs its own Job and rolls the workers.

    The control plane's kwok node runs no containers: it marks pods Running, and a Job's
    pods Succeeded. For the failure the node is cordoned so that the Job's pods stay
    unscheduled, and the test marks them Failed through the pods' status subresource; the
    Job controller then fails the Job (BackoffLimitExceeded). kwok has no container logs, so
    the message is the Job's own reason instead of a log line (the real-node test reads one).
    """
    (doc,) = load_example("chat.yaml")
    doc["spec"]["migrate"] = ["python", "-m", "channelapp.examples.migrate"]
    first = "ghcr.io/channelapp/channelapp:0.1.0"
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))

    # First rollout: the Job of the first image, then the workers.
    job = wait_for(lambda: _job_of(kube_cluster, namespace, first), 30, what="first Job")
    job_name = job["metadata"]["name"]
    app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "ChannelApp", app["metadata"]["uid"], True,
    )  # fmt: skip
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    worker = wait_for(
        lambda: _get(kube_cluster, namespace, "deployment", "chat-worker"), 60, what="workers"
    )
    done = wait_for(
        lambda: (
            (_get(kube_cluster, namespace, "job", job_name) or {})
            .get("status", {})
            .get("completionTime")
        ),
        30,
        what="first Job complete",
    )
    # Created once the Job had completed (both to the second).
    assert done <= worker["metadata"]["creationTimestamp"]
    assert worker["metadata"]["annotations"][migrate.ANNOTATION] == job_name.rsplit("-", 1)[1]

    nodes = [n["metadata"]["name"] for n in kube_cluster.kubectl_json("get", "nodes")["items"]]
    second = "ghcr.io/channelapp/channelapp:0.2.0-broken"
    try:
        for node in nodes:
            kube_cluster.kubectl("cordon", node)
        _set_image(kube_cluster, namespace, second)
        job2 = wait_for(lambda: _job_of(kube_cluster, namespace, second), 30, what="second Job")
        wait_for(
            lambda: (
                _condition(
                    kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace),
                    "Progressing",
                ).get("reason")
                == "Migrating"
            ),
            30,
            what="Progressing=Migrating",
        )
        assert _worker_image(kube_cluster, namespace) == first
        wait_for(
            lambda: _fail_pods(kube_cluster, namespace, job2["metadata"]["name"]),
            60, interval=1.0, what="the second Job failed",
        )  # fmt: skip

        def degraded() -> dict[str, Any] | None:
            app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
            cond = _condition(app, "Degraded")
            return app if cond.get("reason") == "MigrationFailed" else None

        app = wait_for(degraded, 60, what="Degraded=MigrationFailed")
        cond = _condition(app, "Degraded")
        assert cond["status"] == "True"
        assert "BackoffLimitExceeded" in cond["message"], cond
        assert job2["metadata"]["name"] in cond["message"]
        assert app["status"]["migration"]["phase"] == "Failed"
        assert _condition(app, "Ready")["status"] == "False"
        # The old workers keep serving: their template did not change, and stays so.
        time.sleep(3)
        assert _worker_image(kube_cluster, namespace) == first
        events = kube_cluster.kubectl_json(
            "get", "events", "-n", namespace, "--field-selector",
            "involvedObject.name=chat,reason=MigrationFailed",
        )["items"]  # fmt: skip
        assert events and events[0]["type"] == "Warning"
    finally:
        for node in nodes:
            kube_cluster.kubectl("uncordon", node)

    # The next spec change runs its own Job, then rolls the workers; older Jobs go.
    third = "ghcr.io/channelapp/channelapp:0.3.0"
    _set_image(kube_cluster, namespace, third)
    wait_for(lambda: _worker_image(kube_cluster, namespace) == third, 90, what="workers rolled")
    job3 = _job_of(kube_cluster, namespace, third)
    assert job3 is not None and migrate.job_phase(job3) == migrate.SUCCEEDED
    wait_for(
        lambda: (
            [j["metadata"]["name"] for j in _jobs(kube_cluster, namespace)]
            == [job3["metadata"]["name"]]
        ),
        30,
        what="older Jobs deleted",
    )

    def recovered() -> bool:
        app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
        return _condition(app, "Degraded").get("reason") != "MigrationFailed"

    wait_for(recovered, 30, what="MigrationFailed cleared")
