"""Creating a child on the real control plane: an absent child is created, never merged
into an object someone else made since the operator looked, and fields the spec drops later
are removed (the create leaves them to the apply)."""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes
import pytest
from channelapp_operator import names as n
from channelapp_operator.kube import Kube
from channelapp_operator.ownership import ChildExists

from devtools.kube import KubeCluster

pytestmark = pytest.mark.cluster


def kube_for(cluster: KubeCluster) -> Kube:
    return Kube(kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def channelapp(cluster: KubeCluster, ns: str) -> str:
    """A ChannelApp to own the children (no operator runs): its UID."""
    app = {
        "apiVersion": f"{n.GROUP}/{n.VERSION}",
        "kind": n.KIND,
        "metadata": {"name": "app"},
        "spec": {"image": "example/app:1", "app": "chat.app:app"},
    }
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(app))
    return str(cluster.kubectl_json("get", "channelapp", "app", "-n", ns)["metadata"]["uid"])


def owner(ns: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{n.GROUP}/{n.VERSION}",
        "kind": n.KIND,
        "name": "app",
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def secret(ns: str, uid: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "child", "namespace": ns, "ownerReferences": [owner(ns, uid)]},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_an_object_created_after_the_check_is_not_taken_over(
    kube_cluster: KubeCluster,
    namespace: str,
    channelapp_crd: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = kube_for(kube_cluster)
    uid = channelapp(kube_cluster, namespace)
    # Someone else's Secret with fields that do not conflict with the app's.
    kube_cluster.kubectl(
        "create", "secret", "generic", "child", "-n", namespace, "--from-literal=other=x"
    )
    before = kube_cluster.kubectl_json("get", "secret", "child", "-n", namespace)
    real_lookup = Kube.lookup
    calls = []

    def late_lookup(self: Kube, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        calls.append(name)
        # The first look finds nothing: the Secret appears just after it.
        return None if len(calls) == 1 else real_lookup(self, kind, ns, name)

    monkeypatch.setattr(Kube, "lookup", late_lookup)
    with pytest.raises(ChildExists) as refused:
        kube.apply_owned(secret(namespace, uid, {"key": "v"}), uid)
    assert "Secret/child" in str(refused.value)
    after = kube_cluster.kubectl_json("get", "secret", "child", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")
    assert set(after["data"]) == {"other"}


def test_a_created_child_loses_fields_a_later_apply_drops(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    kube = kube_for(kube_cluster)
    uid = channelapp(kube_cluster, namespace)
    created = kube.apply_owned(secret(namespace, uid, {"a": "1", "b": "2"}), uid)
    managers = {(m["manager"], m["operation"]) for m in created["metadata"]["managedFields"]}
    assert managers == {(n.MANAGER, "Apply")}, managers
    kube.apply_owned(secret(namespace, uid, {"a": "1"}), uid)
    live = json.loads(
        kube_cluster.kubectl("get", "secret", "child", "-n", namespace, "-o", "json").stdout
    )
    assert set(live["data"]) == {"a"}
