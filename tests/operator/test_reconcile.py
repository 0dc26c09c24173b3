"""The operator against the real control plane: children, status, rollouts, restart, deletion."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from devtools.kube import KubeCluster
from devtools.operator import CRD, OperatorProcess, load_example
from devtools.polling import wait_for

pytestmark = pytest.mark.cluster

CHILDREN = [
    ("deployment", "chat-protocol"),
    ("deployment", "chat-worker"),
    ("service", "chat"),
    ("service", "chat-redis"),
    ("statefulset", "chat-redis"),
    ("secret", "chat-secrets"),
]


def children_ready(cluster: KubeCluster, ns: str, name: str = "chat") -> dict | None:  # type: ignore[type-arg]
    """The app once every child is rolled out and ready (Progressing=False)."""
    app = cluster.kubectl_json("get", "channelapp", name, "-n", ns)
    cond = condition(app, "Progressing")
    return app if cond and cond["reason"] == "RolloutComplete" else None


def get(cluster: KubeCluster, ns: str, kind: str, name: str) -> dict | None:  # type: ignore[type-arg]
    proc = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def condition(app: dict, type_: str) -> dict | None:  # type: ignore[type-arg]
    return next(
        (c for c in app.get("status", {}).get("conditions", []) if c["type"] == type_), None
    )


def apply_chat(cluster: KubeCluster, ns: str) -> dict:  # type: ignore[type-arg]
    (doc,) = load_example("chat.yaml")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    return doc


def test_sample_creates_every_child_and_becomes_ready(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
    uid = app["metadata"]["uid"]
    for kind, name in CHILDREN:
        obj = wait_for(
            lambda k=kind, n=name: get(kube_cluster, namespace, k, n), 30, what=f"{kind}/{name}"
        )
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ChannelApp", uid, True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "chat"

    proto = get(kube_cluster, namespace, "deployment", "chat-protocol")
    assert proto["spec"]["replicas"] == 2
    container = proto["spec"]["template"]["spec"]["containers"][0]
    # The runtime image, no app: an app deploy never rolls the protocol pods.
    assert container["image"] == "ghcr.io/channelapp/channelapp:0.1.0"
    assert container["args"][:2] == ["protocol", "--host"]
    env = {e["name"]: e for e in container["env"]}
    # Two shards, each a primary and a replica found through the app's three Sentinels.
    sentinels = ",".join(
        f"chat-redis-sentinel-{m}.chat-redis.{namespace}.svc:26379" for m in range(3)
    )
    assert env["CHANNELAPP_REDIS_URLS"]["value"] == ",".join(
        f"redis+sentinel://{sentinels}/shard-{i}/0" for i in range(2)
    )
    sts = get(kube_cluster, namespace, "statefulset", "chat-redis")
    assert sts["spec"]["replicas"] == 4
    assert (
        get(kube_cluster, namespace, "statefulset", "chat-redis-sentinel")["spec"]["replicas"] == 3
    )
    worker = kube_cluster.kubectl_json(
        "get", "deployment", "chat-worker", "-n", namespace, "--show-managed-fields"
    )
    assert worker["spec"]["replicas"] == 1
    managers = {f["manager"] for f in worker["metadata"]["managedFields"]}
    assert {"channelapp-operator", "channelapp-autoscaler"} <= managers

    # kwok runs the pods: Deployments and the StatefulSet report ready replicas.
    app = wait_for(lambda: children_ready(kube_cluster, namespace), 90, what="children ready")
    assert app["status"]["observedGeneration"] == app["metadata"]["generation"]
    assert app["status"]["protocol"]["summary"] == "2/2"
    assert app["status"]["workers"]["summary"] == "1/1"
    # The operator runs outside the cluster here, so the managed shards' DNS names do not
    # resolve: it says so instead of scaling on a guess, and READY is not True beside it.
    degraded = condition(app, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ShardUnreachable"
    ready = condition(app, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ShardUnreachable"), ready
    assert ready["message"].startswith("children ready, but queue depth unreadable")
    table = kube_cluster.kubectl("get", "channelapps", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "WORKERS", "QUEUE", "SHARDS", "AGE"]
    # The depth is unknown, not 0 or the last value read.
    assert table[1].split()[:5] == ["chat", "False", "1/1", "unknown", "0/2"]
    assert "queueDepth" not in app["status"]
    wide = kube_cluster.kubectl("get", "chapp", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [
        "NAME", "READY", "WORKERS", "QUEUE", "SHARDS", "AGE",
        "PROTOCOL", "OLDEST", "UNREACHABLE", "REASON",
    ]  # fmt: skip
    row = wide[1].split()
    assert row[6] == "2/2" and row[-1] == "ShardUnreachable", wide[1]
    assert f"chat-redis-sentinel-0.chat-redis.{namespace}.svc" in wide[1]
    warnings = events_of(kube_cluster, namespace, "ShardUnreachable")
    assert warnings and all(e["type"] == "Warning" for e in warnings)
    events = kube_cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.kind=ChannelApp"
    ).stdout
    assert "Created" in events and "applied generation 1" in events


def test_spec_change_rolls_deployments_and_keeps_scaled_replicas(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    wait_for(lambda: get(kube_cluster, namespace, "deployment", "chat-worker"), 30)
    # Someone (the autoscaler) owns replicas; a spec change must not reset them.
    kube_cluster.kubectl(
        "patch",
        "channelapp",
        "chat",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"workers": {"minReplicas": 3}}}),
    )
    wait_for(
        lambda: get(kube_cluster, namespace, "deployment", "chat-worker")["spec"]["replicas"] == 3,
        30,
        what="worker replicas raised to the new minimum",
    )
    kube_cluster.kubectl(
        "patch",
        "channelapp",
        "chat",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"image": "ghcr.io/channelapp/channelapp:0.2.0"}}),
    )
    protocol_template = get(kube_cluster, namespace, "deployment", "chat-protocol")["spec"][
        "template"
    ]
    wait_for(
        lambda: get(kube_cluster, namespace, "deployment", "chat-worker")["spec"]["template"][
            "spec"
        ]["containers"][0]["image"].endswith(":0.2.0"),
        30,
        what="chat-worker image",
    )
    kube_cluster.kubectl(
        "rollout", "status", "deployment/chat-worker", "-n", namespace, "--timeout=90s"
    )
    # An app deploy leaves the protocol servers (and their sockets) alone.
    protocol = get(kube_cluster, namespace, "deployment", "chat-protocol")
    assert protocol["spec"]["template"] == protocol_template
    assert get(kube_cluster, namespace, "deployment", "chat-worker")["spec"]["replicas"] == 3
    rs = kube_cluster.kubectl_json(
        "get", "replicasets", "-n", namespace, "-l", "app.kubernetes.io/component=worker"
    )["items"]
    assert len(rs) == 2  # the old template's and the new one's
    app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
    wait_for(
        lambda: (
            kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)["status"].get(
                "observedGeneration"
            )
            == app["metadata"]["generation"]
        ),
        30,
    )


def test_operator_restart_creates_no_duplicates(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    wait_for(lambda: get(kube_cluster, namespace, "deployment", "chat-worker"), 30)
    secret_before = get(kube_cluster, namespace, "secret", "chat-secrets")["data"]
    before = {
        kind: kube_cluster.kubectl_json("get", kind, "-n", namespace)["items"]
        for kind in ("deployments", "statefulsets", "services", "secrets")
    }
    operator.restart()
    wait_for(
        lambda: (
            "Resumed"
            in kube_cluster.kubectl(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                "involvedObject.kind=ChannelApp",
            ).stdout
        ),
        30,
        what="Resumed event",
    )
    for kind, items in before.items():
        after = kube_cluster.kubectl_json("get", kind, "-n", namespace)["items"]
        assert sorted(o["metadata"]["uid"] for o in after) == sorted(
            o["metadata"]["uid"] for o in items
        ), kind
    assert get(kube_cluster, namespace, "secret", "chat-secrets")["data"] == secret_before


def test_deleting_the_app_garbage_collects_children(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    for kind, name in CHILDREN:
        wait_for(lambda k=kind, n=name: get(kube_cluster, namespace, k, n), 30)
    wait_for(lambda: 'app="chat"' in operator.metrics(), 30, what="chat's series")
    kube_cluster.kubectl("delete", "channelapp", "chat", "-n", namespace, "--wait=true")
    for kind, name in CHILDREN:
        wait_for(
            lambda k=kind, n=name: get(kube_cluster, namespace, k, n) is None,
            60,
            what=f"{kind}/{name} garbage-collected",
        )
    pods = kube_cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    wait_for(
        lambda: not kube_cluster.kubectl_json("get", "pods", "-n", namespace)["items"],
        60,
        what=f"pods gone ({len(pods)} left)",
    )
    # The app's metric series go with it.
    wait_for(lambda: 'app="chat"' not in operator.metrics(), 30, what="chat's series removed")


def test_operator_exports_metrics_and_health(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    wait_for(lambda: 'channelapp_operator_reconciles_total{result="ok"}' in operator.metrics(), 30)
    text = operator.metrics()
    assert "channelapp_operator_depth_read_seconds_bucket" in text
    assert 'channelapp_operator_depth_read_failures_total{app="chat"' in text


def events_of(cluster: KubeCluster, ns: str, reason: str) -> list[dict]:  # type: ignore[type-arg]
    items = cluster.kubectl_json(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.kind=ChannelApp,reason={reason}",
    )["items"]
    return items


def test_no_finalizer_so_deletion_needs_no_operator(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    for kind, name in CHILDREN:
        wait_for(lambda k=kind, n=name: get(kube_cluster, namespace, k, n), 30)
    wait_for(lambda: events_of(kube_cluster, namespace, "Created"), 30, what="Created event")
    app = get(kube_cluster, namespace, "channelapp", "chat")
    assert not app["metadata"].get("finalizers"), app["metadata"]
    operator.stop()  # as after `helm uninstall`
    proc = kube_cluster.kubectl(
        "delete", "channelapp", "chat", "-n", namespace, "--timeout=30s", check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert get(kube_cluster, namespace, "channelapp", "chat") is None
    for kind, name in CHILDREN:
        wait_for(
            lambda k=kind, n=name: get(kube_cluster, namespace, k, n) is None,
            60,
            what=f"{kind}/{name} garbage-collected without the operator",
        )


def test_finalizer_of_an_older_operator_is_removed(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    (doc,) = load_example("chat.yaml")
    doc["metadata"]["finalizers"] = ["kopf.zalando.org/KopfFinalizerMarker"]
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    wait_for(
        lambda: (
            not get(kube_cluster, namespace, "channelapp", "chat")["metadata"].get("finalizers")
        ),
        30,
        what="kopf's finalizer removed",
    )


def test_children_changed_or_deleted_by_hand_are_put_back(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    for kind, name in CHILDREN:
        wait_for(lambda k=kind, n=name: get(kube_cluster, namespace, k, n), 30)
    wait_for(lambda: events_of(kube_cluster, namespace, "Created"), 30, what="Created event")
    image = "ghcr.io/channelapp/channelapp:0.1.0"
    timings = {}

    def protocol_image() -> str:
        return get(kube_cluster, namespace, "deployment", "chat-protocol")["spec"]["template"][
            "spec"
        ]["containers"][0]["image"]

    started = time.monotonic()
    kube_cluster.kubectl(
        "set", "image", "deploy/chat-protocol", "protocol=evil/image:1", "-n", namespace
    )
    wait_for(lambda: protocol_image() == image, 20, what="protocol image restored")
    timings["set image"] = time.monotonic() - started

    for kind, name in (("deployment", "chat-worker"), ("service", "chat")):
        uid = get(kube_cluster, namespace, kind, name)["metadata"]["uid"]
        started = time.monotonic()
        kube_cluster.kubectl("delete", kind, name, "-n", namespace, "--wait=false")
        wait_for(
            lambda k=kind, n=name, u=uid: (
                (o := get(kube_cluster, namespace, k, n)) and o["metadata"]["uid"] != u
            ),
            20,
            what=f"{kind}/{name} re-created",
        )
        timings[f"delete {kind}"] = time.monotonic() - started
    worker = get(kube_cluster, namespace, "deployment", "chat-worker")
    assert worker["spec"]["replicas"] == 1
    assert worker["metadata"]["ownerReferences"][0]["kind"] == "ChannelApp"
    print(f"drift corrected in: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}")

    def corrected() -> list[str]:
        return [e["message"] for e in events_of(kube_cluster, namespace, "DriftCorrected")]

    wait_for(lambda: len(corrected()) >= 3, 20, what="one DriftCorrected event per correction")
    messages = " | ".join(corrected())
    for child in ("Deployment/chat-protocol", "Deployment/chat-worker", "Service/chat"):
        assert child in messages, messages


def test_restricted_namespace_admits_every_pod(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    apply_chat(kube_cluster, namespace)

    try:
        wait_for(lambda: children_ready(kube_cluster, namespace), 90, what="children ready")
    except AssertionError:
        app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
        raise AssertionError(f"Ready: {condition(app, 'Ready')}") from None
    pods = kube_cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}
    assert components == {"protocol", "worker", "redis", "redis-sentinel"}


def test_refused_pods_are_named_in_the_ready_condition(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.kubectl(
        "create", "quota", "no-pods", "--hard=pods=0", "-n", namespace
    )  # fmt: skip
    apply_chat(kube_cluster, namespace)

    def refused() -> dict | None:  # type: ignore[type-arg]
        app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
        cond = condition(app, "Ready")
        return cond if cond and cond["reason"] == "PodsRefused" else None

    cond = wait_for(refused, 60, what="Ready=False PodsRefused")
    assert cond["status"] == "False"
    assert "exceeded quota" in cond["message"], cond["message"]

    def every_workload_named() -> dict | None:  # type: ignore[type-arg]
        # Each controller reports its refusal when it first tries: the names come in one by one.
        got = refused()
        message = (got or {}).get("message", "")
        wanted = ("protocol servers:", "workers:", "redis shards: ")
        return got if all(w in message for w in wanted) else None

    wait_for(every_workload_named, 60, what="every workload's refusal named")


def refusing_policy(cluster: KubeCluster, ns: str) -> str:
    """An admission policy refusing this namespace's Deployments that carry env TOKEN."""
    name = f"refuse-token-{ns}"
    docs = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"],
                }]},
                "validations": [{
                    "expression": "!object.spec.template.spec.containers.exists(c, "
                    "has(c.env) && c.env.exists(e, e.name == 'TOKEN'))",
                    "message": "env TOKEN is not allowed here",
                }],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": ns}}},
            },
        },
    ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i",
                                         "env": [{"name": "TOKEN", "value": "x"}]}]},
            },
        },
    }  # fmt: skip

    def enforced() -> bool:
        proc = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
        )
        return proc.returncode != 0 and "env TOKEN is not allowed here" in proc.stderr

    wait_for(enforced, 60, what="the admission policy refusing Deployments")
    return name


def test_a_spec_the_children_refuse_gives_one_clear_condition(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    policy = refusing_policy(kube_cluster, namespace)
    try:
        refused_then_fixed(kube_cluster, namespace, operator)
    finally:
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            kube_cluster.kubectl("delete", kind, policy, "--ignore-not-found", check=False)


def poll_failures(operator: OperatorProcess, ns: str, name: str) -> float:
    """Ticks of an app's poll loop whose depth read failed."""
    labels = f'app="{name}",namespace="{ns}"'
    pattern = rf"^channelapp_operator_depth_read_failures_total\{{{re.escape(labels)}\}} (\S+)$"
    found = re.search(pattern, operator.metrics(), re.M)
    return float(found.group(1)) if found else 0.0


def refused_then_fixed(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    (doc,) = load_example("chat.yaml")
    # Accepted by the CRD, refused by the namespace's admission policy for Deployments (spec.env
    # is the workers' alone: protocol pods run the runtime image with the operator's env).
    doc["spec"]["env"] = [{"name": "TOKEN", "value": "1"}]
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))

    def degraded() -> dict | None:  # type: ignore[type-arg]
        cond = condition(get(kube_cluster, namespace, "channelapp", "chat"), "Degraded")
        return cond if cond and cond["reason"] == "ApplyFailed" else None

    cond = wait_for(degraded, 30, what="Degraded=True ApplyFailed")
    message = cond["message"]
    assert cond["status"] == "True"
    assert message.startswith("applying Deployment/chat-worker: "), message
    assert "env TOKEN is not allowed here" in message, message
    for raw in ("HTTP response", "Traceback", "ApiException", '"kind"', "\n"):
        assert raw not in message, message
    # The poll loop, which cannot read the shards from outside the cluster, keeps it, and
    # the apply is retried under the one Event: wait until both had their chances.
    failed_apply = f"{namespace}/chat: applying Deployment/"
    applies, ticks = operator.log().count(failed_apply), poll_failures(operator, namespace, "chat")
    wait_for(
        lambda: (
            operator.log().count(failed_apply) >= applies + 2
            and poll_failures(operator, namespace, "chat") >= ticks + 5
        ),
        60,
        what="two more failed applies and five more poll ticks",
    )
    assert degraded() is not None, condition(
        get(kube_cluster, namespace, "channelapp", "chat"), "Degraded"
    )
    # Retried every few seconds, but one Event for the one message.
    assert len(events_of(kube_cluster, namespace, "ApplyFailed")) == 1
    failures = [e for e in kube_cluster.kubectl_json("get", "events", "-n", namespace)["items"]]
    assert sum(e.get("count", 1) for e in failures if e["type"] != "Normal"
               and e["reason"] != "ShardUnreachable") <= 2  # fmt: skip

    kube_cluster.patch_channelapp(namespace, "chat", [{"op": "remove", "path": "/spec/env"}])
    wait_for(
        lambda: (
            condition(get(kube_cluster, namespace, "channelapp", "chat"), "Degraded")["reason"]
            != "ApplyFailed"
        ),
        60,
        what="ApplyFailed cleared by a fixed spec",
    )
    wait_for(lambda: get(kube_cluster, namespace, "deployment", "chat-protocol"), 10)


def test_kubectl_scale_sets_the_protocol_servers(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    wait_for(lambda: children_ready(kube_cluster, namespace), 90, what="children ready")
    kube_cluster.kubectl("scale", "chapp", "chat", "--replicas=3", "-n", namespace)
    wait_for(
        lambda: (
            get(kube_cluster, namespace, "deployment", "chat-protocol")["spec"]["replicas"] == 3
        ),
        30,
        what="protocol Deployment scaled to 3",
    )
    path = f"/apis/channelapp.dev/v1alpha1/namespaces/{namespace}/channelapps/chat/scale"

    def scale() -> dict:  # type: ignore[type-arg]
        return json.loads(kube_cluster.kubectl("get", "--raw", path).stdout)

    assert scale()["spec"]["replicas"] == 3
    selector = "app.kubernetes.io/instance=chat,app.kubernetes.io/component=protocol"
    wait_for(
        lambda: scale()["status"] == {"replicas": 3, "selector": selector},
        60,
        what="scale status of 3 ready protocol servers",
    )
    # The workers stay the autoscaler's.
    assert get(kube_cluster, namespace, "deployment", "chat-worker")["spec"]["replicas"] == 1


def test_crd_deletion_needs_no_operator(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess, channelapp_crd: str
) -> None:
    apply_chat(kube_cluster, namespace)
    wait_for(lambda: events_of(kube_cluster, namespace, "Created"), 30, what="Created event")
    operator.stop()  # as after `helm uninstall`
    try:
        proc = kube_cluster.kubectl(
            "delete", "crd", channelapp_crd, "--timeout=60s", check=False, timeout=90
        )
        assert proc.returncode == 0, proc.stderr  # not held by a finalizer on the app
        assert kube_cluster.kubectl("get", "crd", channelapp_crd, check=False).returncode != 0
    finally:
        # The session's other tests need the CRD back.
        kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
        kube_cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{channelapp_crd}", "--timeout=60s"
        )
