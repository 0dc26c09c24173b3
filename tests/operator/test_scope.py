"""A cluster-wide and a namespace-scoped operator never both act on one ChannelApp."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.kube import KubeCluster
from devtools.operator import ROOT, OperatorProcess
from devtools.polling import wait_for
from tests.operator.test_reconcile import apply_chat

pytestmark = pytest.mark.cluster

PEERING_CRDS = ROOT / "charts" / "channelapp-operator" / "crds" / "kopf-peerings.yaml"
RELEASE_PEERING = """\
apiVersion: kopf.dev/v1
kind: KopfPeering
metadata:
  name: channelapp-operator
  labels: {app.kubernetes.io/name: channelapp-operator}
"""


def event_count(cluster: KubeCluster, ns: str, reason: str) -> int:
    items = cluster.kubectl_json(
        "get", "events", "-n", ns,
        "--field-selector", f"involvedObject.kind=ChannelApp,reason={reason}",
    )["items"]  # fmt: skip
    return sum(int(e.get("count") or 1) for e in items)


def test_cluster_release_leaves_a_namespace_with_its_own_release(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str, tmp_path: Path
) -> None:
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    # What `helm install --set rbac.scope=namespace` creates in its namespace.
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=RELEASE_PEERING)
    (tmp_path / "wide").mkdir()
    wide = OperatorProcess(
        kube_cluster, namespace, tmp_path / "wide", args=["--standalone", "--all-namespaces"]
    ).start()
    local = OperatorProcess(kube_cluster, namespace, tmp_path).start()
    try:
        wait_for(lambda: "has its own operator" in wide.log(), 30, what="deferral logged")
        apply_chat(kube_cluster, namespace)
        wait_for(lambda: event_count(kube_cluster, namespace, "Created"), 30, what="Created")
        # The cluster-wide operator saw the app too: kopf spawns an object's daemons and then,
        # in the same cycle, runs its create handlers (here filtered out by the deferral).
        wait_for(lambda: f"supervising {namespace}/chat" in wide.log(), 30, what="wide saw the app")
        assert event_count(kube_cluster, namespace, "Created") == 1

        # The namespaced release goes: the cluster-wide operator acts here again.
        local.stop()
        kube_cluster.kubectl("delete", "kopfpeering", "channelapp-operator", "-n", namespace)
        wait_for(lambda: "acting here again" in wide.log(), 30, what="takeover logged")
        kube_cluster.patch_channelapp(namespace, "chat", {"spec": {"protocol": {"replicas": 3}}})
        wait_for(
            lambda: (
                kube_cluster.kubectl_json("get", "deployment", "chat-protocol", "-n", namespace)[
                    "spec"
                ]["replicas"]
                == 3
            ),
            30,
            what="the cluster-wide operator applies the change",
        )
        # kopf posts an operator's Events in order: once the cluster-wide operator's Event for
        # this change is in, any it had posted for the app's creation would be too.
        wait_for(lambda: event_count(kube_cluster, namespace, "Updated"), 30, what="Updated")
        assert event_count(kube_cluster, namespace, "Created") == 1
    finally:
        local.stop()
        wide.stop()
