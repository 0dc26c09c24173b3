"""The operator as a tenant boundary on the real control plane: it changes, uses and deletes
only what its app controls, sends no ServiceAccount token as a password, says when no
protocol server runs, and is not ready while it lacks a permission it acts with."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.kube import KubeCluster
from devtools.operator import OperatorProcess
from devtools.polling import wait_for
from devtools.redis import RedisServer

pytestmark = [pytest.mark.cluster, pytest.mark.redis]

IMAGE = "ghcr.io/channelapp/channelapp:0.1.0"


def app(name: str, redis: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "channelapp.dev/v1alpha1",
        "kind": "ChannelApp",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, "app": "channelapp.examples.chat:app", "redis": redis, **spec},
    }


def apply(cluster: KubeCluster, ns: str, *docs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))


def get(cluster: KubeCluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def condition(cluster: KubeCluster, ns: str, name: str, type_: str) -> dict[str, Any] | None:
    found = get(cluster, ns, "channelapp", name) or {}
    conds = (found.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == type_), None)


def ready_reason(cluster: KubeCluster, ns: str, name: str, reason: str) -> dict[str, Any] | None:
    cond = condition(cluster, ns, name, "Ready")
    return cond if cond and cond["status"] == "False" and cond["reason"] == reason else None


def events(cluster: KubeCluster, ns: str, reason: str) -> list[dict[str, Any]]:
    out = cluster.kubectl_json("get", "events", "-n", ns, "--field-selector", f"reason={reason}")
    return list(out.get("items") or [])


def foreign_service(cluster: KubeCluster, ns: str, name: str) -> dict[str, Any]:
    apply(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {"team": "billing"}},
            "spec": {
                "selector": {"team": "billing"},
                "ports": [{"name": "web", "port": 80, "targetPort": 8080}],
            },
        },
    )
    found = get(cluster, ns, "service", name)
    assert found is not None
    return found


def unchanged(cluster: KubeCluster, ns: str, kind: str, before: dict[str, Any]) -> None:
    now = get(cluster, ns, kind, before["metadata"]["name"])
    assert now is not None, f"{kind}/{before['metadata']['name']} was deleted"
    assert now["metadata"]["uid"] == before["metadata"]["uid"]
    assert now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not now["metadata"].get("ownerReferences")


def test_an_app_named_like_a_foreign_service_leaves_it_alone(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
) -> None:
    billing = foreign_service(kube_cluster, namespace, "billing")
    apply(
        kube_cluster,
        namespace,
        app("billing", {"external": {"urls": [f"redis://127.0.0.1:{redis_server.port}/0"]}}),
    )
    cond = wait_for(
        lambda: ready_reason(kube_cluster, namespace, "billing", "ChildExists"),
        60,
        what="Ready=False ChildExists",
    )
    assert "Service/billing exists and is not this app's" in cond["message"], cond
    degraded = condition(kube_cluster, namespace, "billing", "Degraded")
    progressing = condition(kube_cluster, namespace, "billing", "Progressing")
    assert degraded and (degraded["status"], degraded["reason"]) == ("True", "ChildExists")
    assert progressing and progressing["reason"] != "RolloutComplete", progressing
    warning = wait_for(
        lambda: events(kube_cluster, namespace, "ChildExists"), 30, what="ChildExists Event"
    )
    assert warning[0]["type"] == "Warning" and "Service/billing" in warning[0]["message"]
    unchanged(kube_cluster, namespace, "service", billing)
    # Nothing of the app is made either while its Service's name is taken.
    assert get(kube_cluster, namespace, "deployment", "billing-protocol") is None

    kube_cluster.kubectl("delete", "channelapp", "billing", "-n", namespace, "--wait=true")
    unchanged(kube_cluster, namespace, "service", billing)


def test_an_external_redis_app_leaves_an_admins_redis_named_objects(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
) -> None:
    service = foreign_service(kube_cluster, namespace, "x-redis")
    apply(
        kube_cluster,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "x-redis"},
            "spec": {
                "serviceName": "x-redis",
                "replicas": 0,
                "selector": {"matchLabels": {"team": "billing"}},
                "template": {
                    "metadata": {"labels": {"team": "billing"}},
                    "spec": {"containers": [{"name": "db", "image": "example/db:1"}]},
                },
            },
        },
    )
    sts = get(kube_cluster, namespace, "statefulset", "x-redis")
    assert sts is not None
    apply(
        kube_cluster,
        namespace,
        app("x", {"external": {"urls": [f"redis://127.0.0.1:{redis_server.port}/0"]}}),
    )
    created = wait_for(
        lambda: [e for e in events(kube_cluster, namespace, "Created")
                 if e["involvedObject"]["name"] == "x"],
        60,
        what="the app applied",
    )  # fmt: skip
    assert "deleted" not in created[0]["message"], created[0]["message"]
    for kind, before in (("statefulset", sts), ("service", service)):
        now = get(kube_cluster, namespace, kind, "x-redis")
        assert now is not None and now["metadata"]["uid"] == before["metadata"]["uid"]
        assert not now["metadata"].get("ownerReferences")


def test_a_child_controlled_by_another_app_is_not_taken_over(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
) -> None:
    external = {"external": {"urls": [f"redis://127.0.0.1:{redis_server.port}/0"]}}
    apply(kube_cluster, namespace, app("uu", external))
    wait_for(lambda: get(kube_cluster, namespace, "service", "uu"), 60, what="Service/uu")
    uu = kube_cluster.kubectl_json("get", "channelapp", "uu", "-n", namespace)["metadata"]["uid"]
    # A Service another app controls, under the name the next app's Service would take.
    apply(
        kube_cluster,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "vv",
                "ownerReferences": [{"apiVersion": "channelapp.dev/v1alpha1",
                                     "kind": "ChannelApp", "name": "uu", "uid": uu,
                                     "controller": True}],
            },
            "spec": {"selector": {"team": "uu"}, "ports": [{"port": 80}]},
        },
    )  # fmt: skip
    before = get(kube_cluster, namespace, "service", "vv")
    assert before is not None
    apply(kube_cluster, namespace, app("vv", external))
    cond = wait_for(
        lambda: ready_reason(kube_cluster, namespace, "vv", "ChildExists"),
        60,
        what="Ready=False ChildExists",
    )
    # The status names the Service, not whose it is (the author may not read that owner).
    assert "Service/vv exists and is not this app's" in cond["message"], cond
    app_vv = get(kube_cluster, namespace, "channelapp", "vv") or {}
    status_text = json.dumps(app_vv.get("status"))
    assert uu not in status_text and "ChannelApp/uu" not in status_text, status_text
    for event in events(kube_cluster, namespace, "ChildExists"):
        assert uu not in event["message"] and "uu" not in event["message"], event
    assert f"Service/vv is controlled by ChannelApp/uu (uid {uu})" in operator.log()
    now = get(kube_cluster, namespace, "service", "vv")
    assert now is not None
    assert now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_foreign_secret_named_like_the_apps_is_not_used(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.kubectl(
        "create", "secret", "generic", "z-secrets", "-n", namespace,
        "--from-literal=redis-password=theirs", "--from-literal=secret-key=theirs-too",
    )  # fmt: skip
    before = get(kube_cluster, namespace, "secret", "z-secrets")
    assert before is not None
    apply(kube_cluster, namespace, app("z", {"managed": {"shards": 1}}))
    cond = wait_for(
        lambda: ready_reason(kube_cluster, namespace, "z", "ChildExists"),
        60,
        what="Ready=False ChildExists",
    )
    assert "Secret/z-secrets" in cond["message"], cond
    # No workload was made that would read it.
    for kind, name in (("statefulset", "z-redis"), ("deployment", "z-protocol"),
                       ("deployment", "z-worker")):  # fmt: skip
        assert get(kube_cluster, namespace, kind, name) is None, f"{kind}/{name}"
    unchanged(kube_cluster, namespace, "secret", before)


class Listener:
    """A TCP peer on 127.0.0.1 that records every byte it is sent and answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.received = b""
        self.accepts = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepts += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while chunk := conn.recv(4096):
                    with self._lock:
                        self.received += chunk
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    peer = Listener()
    try:
        yield peer
    finally:
        peer.close()


def test_a_service_account_token_is_never_sent_as_a_password(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess, listener: Listener
) -> None:
    token = "sa-token-that-must-stay-here"
    kube_cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    apply(
        kube_cluster,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "robot-token",
                "annotations": {"kubernetes.io/service-account.name": "robot"},
            },
            "type": "kubernetes.io/service-account-token",
            "stringData": {"token": token},
        },
    )
    stored = wait_for(
        lambda: (
            (get(kube_cluster, namespace, "secret", "robot-token") or {})
            .get("data", {})
            .get("token")
        ),
        30,
        what="the token Secret",
    )
    value = base64.b64decode(stored).decode()
    apply(
        kube_cluster,
        namespace,
        app(
            "leak",
            {
                "external": {
                    "urls": [f"redis://127.0.0.1:{listener.port}/0"],
                    "passwordSecretRef": {"name": "robot-token", "key": "token"},
                }
            },
        ),
    )

    def refused() -> dict[str, Any] | None:
        cond = condition(kube_cluster, namespace, "leak", "Degraded")
        return cond if cond and "service-account-token" in cond["message"] else None

    cond = wait_for(refused, 60, what="Degraded naming the Secret's type")
    assert cond["status"] == "True" and value not in cond["message"]
    assert value.encode() not in listener.received
    assert listener.accepts == 0, listener.received


def test_zero_protocol_servers_is_not_ready(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
) -> None:
    apply(
        kube_cluster,
        namespace,
        app(
            "idle",
            {"external": {"urls": [f"redis://127.0.0.1:{redis_server.port}/0"]}},
            protocol={"replicas": 1},
            workers={"minReplicas": 0, "maxReplicas": 2},
        ),
    )
    wait_for(
        lambda: (
            (c := condition(kube_cluster, namespace, "idle", "Ready")) and c["status"] == "True"
        ),
        90,
        what="Ready=True with one protocol server",
    )
    kube_cluster.kubectl("scale", "channelapp", "idle", "-n", namespace, "--replicas=0")
    cond = wait_for(
        lambda: ready_reason(kube_cluster, namespace, "idle", "NoProtocolServers"),
        60,
        what="Ready=False NoProtocolServers",
    )
    assert "0" in cond["message"]


# --- the operator's own permissions ---------------------------------------------------------

ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["channelapp.dev"], "resources": ["channelapps"],
     "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["channelapp.dev"], "resources": ["channelapps/status"], "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets"],
     "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services"],
     "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["list", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "list"]},
    {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"],
     "verbs": ["get", "list", "watch", "patch"]},
]  # fmt: skip


def role(ns: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "operator", "namespace": ns},
        "rules": rules,
    }


@pytest.fixture
def operator_account(kube_cluster: KubeCluster, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig for a ServiceAccount holding the chart's namespaced role."""
    ns = namespace
    kube_cluster.kubectl("create", "serviceaccount", "operator", "-n", ns)
    apply(kube_cluster, ns, role(ns, ROLE_RULES))
    kube_cluster.kubectl(
        "create", "rolebinding", "operator", "-n", ns, "--role=operator",
        f"--serviceaccount={ns}:operator",
    )  # fmt: skip
    discovery = f"channelapp-operator-discovery-{ns}"
    kube_cluster.kubectl(
        "create", "clusterrole", discovery, "--verb=get,list,watch",
        "--resource=customresourcedefinitions.apiextensions.k8s.io,namespaces",
    )  # fmt: skip
    kube_cluster.kubectl(
        "create", "clusterrolebinding", discovery, f"--clusterrole={discovery}",
        f"--serviceaccount={ns}:operator",
    )  # fmt: skip
    path = kube_cluster.token_kubeconfig("operator", ns, tmp_path / "operator-kubeconfig")
    try:
        yield path
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            kube_cluster.kubectl("delete", kind, discovery, "--ignore-not-found", check=False)


def test_readyz_fails_while_a_needed_permission_is_missing(
    kube_cluster: KubeCluster,
    namespace: str,
    channelapp_crd: str,
    operator_account: Path,
    tmp_path: Path,
) -> None:
    proc = OperatorProcess(
        kube_cluster,
        namespace,
        tmp_path,
        env={"KUBECONFIG": str(operator_account)},
        args=["--standalone", "--namespace", namespace, "--permission-check-interval", "1"],
    )
    proc.start()  # ready with the chart's rules
    try:
        apply(kube_cluster, namespace, role(namespace, [r for r in ROLE_RULES
                                                       if r["resources"] != ["channelapps/status"]]))  # fmt: skip
        wait_for(lambda: proc.probe("/readyz") == 503, 30, what="/readyz failing")
        assert "patch channelapps/status.channelapp.dev" in proc.log()
        assert proc.probe("/healthz") == 200
        apply(kube_cluster, namespace, role(namespace, ROLE_RULES))
        wait_for(lambda: proc.probe("/readyz") == 200, 30, what="/readyz passing again")
    finally:
        proc.stop()
