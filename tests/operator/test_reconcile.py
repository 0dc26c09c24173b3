"""The operator against the real control plane: children, status, rollouts, restart, deletion."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.cluster_fixtures import KubeCluster
from tests.support.operator_fixtures import OperatorProcess, load_example
from tests.support.polling import wait_for

pytestmark = pytest.mark.cluster

CHILDREN = [
    ("deployment", "chat-protocol"),
    ("deployment", "chat-worker"),
    ("service", "chat"),
    ("service", "chat-redis"),
    ("statefulset", "chat-redis"),
    ("secret", "chat-secrets"),
]


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
    assert container["image"] == "ghcr.io/channelapp/channelapp:0.1.0"
    assert container["args"][:2] == ["protocol", "channelapp.examples.chat:app"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CHANNELAPP_REDIS_URLS"]["value"] == ",".join(
        f"redis://chat-redis-{i}.chat-redis.{namespace}.svc:6379/0" for i in range(2)
    )
    sts = get(kube_cluster, namespace, "statefulset", "chat-redis")
    assert sts["spec"]["replicas"] == 2
    worker = kube_cluster.kubectl_json(
        "get", "deployment", "chat-worker", "-n", namespace, "--show-managed-fields"
    )
    assert worker["spec"]["replicas"] == 1
    managers = {f["manager"] for f in worker["metadata"]["managedFields"]}
    assert {"channelapp-operator", "channelapp-autoscaler"} <= managers

    # kwok runs the pods: Deployments and the StatefulSet report ready replicas.
    def ready() -> dict | None:  # type: ignore[type-arg]
        app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
        cond = condition(app, "Ready")
        return app if cond and cond["status"] == "True" else None

    app = wait_for(ready, 90, what="Ready=True")
    assert app["status"]["observedGeneration"] == app["metadata"]["generation"]
    assert app["status"]["protocol"] == {"ready": 2, "desired": 2}
    assert app["status"]["workers"]["summary"] == "1/1"
    # The operator runs outside the cluster here, so the managed shards' DNS names do not
    # resolve: it says so instead of scaling on a guess.
    degraded = condition(app, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ShardUnreachable"
    table = kube_cluster.kubectl("get", "channelapps", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "WORKERS", "QUEUE", "SHARDS", "AGE"]
    assert table[1].split()[:5] == ["chat", "True", "1/1", "0", "0/2"]
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
    for name in ("chat-protocol", "chat-worker"):
        wait_for(
            lambda n=name: get(kube_cluster, namespace, "deployment", n)["spec"]["template"][
                "spec"
            ]["containers"][0]["image"].endswith(":0.2.0"),
            30,
            what=f"{name} image",
        )
        kube_cluster.kubectl(
            "rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=90s"
        )
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


def test_operator_exports_metrics_and_health(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_chat(kube_cluster, namespace)
    wait_for(lambda: 'channelapp_operator_reconciles_total{result="ok"}' in operator.metrics(), 30)
    text = operator.metrics()
    assert "channelapp_operator_depth_read_seconds_bucket" in text
    assert 'channelapp_operator_depth_read_failures_total{app="chat"' in text
