"""Voluntary disruptions on real pods: evictions (what ``kubectl drain`` sends) honour the
app's PodDisruptionBudgets."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from devtools import realnode
from devtools.kube import KubeCluster
from devtools.polling import wait_for
from devtools.realnode.bringup import RealCluster
from devtools.realnode.workloads import CHAT_NAMESPACE, channelapp, condition, pod_ready

pytestmark = [pytest.mark.realnode, pytest.mark.cluster]


def evict(kube: KubeCluster, pod: str) -> subprocess.CompletedProcess[str]:
    """POST the pod's eviction subresource, as ``kubectl drain`` does."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": CHAT_NAMESPACE},
    }
    return kube.kubectl(
        "create", "--raw", f"/api/v1/namespaces/{CHAT_NAMESPACE}/pods/{pod}/eviction",
        "-f", "-", input=json.dumps(body), check=False,
    )  # fmt: skip


def budget(kube: KubeCluster, name: str) -> dict[str, Any]:
    return kube.kubectl_json("get", "poddisruptionbudget", name, "-n", CHAT_NAMESPACE)


def settled(pdb: dict[str, Any], healthy: int, allowed: int) -> bool:
    status = pdb.get("status") or {}
    return (
        status.get("observedGeneration") == pdb["metadata"]["generation"]
        and status.get("currentHealthy") == healthy
        and status.get("disruptionsAllowed") == allowed
    )


def protocol_pods(kube: KubeCluster) -> list[dict[str, Any]]:
    pods = kube.kubectl_json(
        "get", "pods", "-n", CHAT_NAMESPACE,
        "-l", "app.kubernetes.io/instance=chat,app.kubernetes.io/component=protocol",
    )["items"]  # fmt: skip
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_evicting_protocol_pods_honours_the_disruption_budget(
    real_cluster: RealCluster, chat_app: dict[str, Any]
) -> None:
    kube = real_cluster.kube
    app = channelapp(kube, CHAT_NAMESPACE, "chat")
    uid = app["metadata"]["uid"]
    # One budget per workload, owned by the app, at most one pod down at a time.
    for name in ("chat-protocol", "chat-worker", "chat-redis"):
        pdb = budget(kube, name)
        assert pdb["spec"]["maxUnavailable"] == 1, pdb["spec"]
        (owner,) = pdb["metadata"]["ownerReferences"]
        assert owner["uid"] == uid and owner["controller"] is True
    wait_for(
        lambda: settled(budget(kube, "chat-protocol"), healthy=2, allowed=1),
        60,
        1,
        what="the protocol budget observed with 2 healthy pods, 1 disruption allowed",
    )
    first, second = sorted(p["metadata"]["name"] for p in protocol_pods(kube))
    try:
        # No room for a replacement: the evicted pod's stays Pending, so the budget is spent.
        kube.kubectl("cordon", realnode.NODE)
        allowed = evict(kube, first)
        assert allowed.returncode == 0, allowed.stderr
        refused = evict(kube, second)
        assert refused.returncode != 0
        assert "TooManyRequests" in refused.stderr, refused.stderr
        assert "disruption budget" in refused.stderr, refused.stderr
        wait_for(
            lambda: settled(budget(kube, "chat-protocol"), healthy=1, allowed=0),
            60,
            1,
            what="the protocol budget at 1 healthy pod, no disruption allowed",
        )
        assert evict(kube, second).returncode != 0  # still refused while the budget is spent
        pod = kube.kubectl_json("get", "pod", second, "-n", CHAT_NAMESPACE)
        assert not pod["metadata"].get("deletionTimestamp") and pod_ready(pod)
    finally:
        kube.kubectl("uncordon", realnode.NODE, check=False)
    wait_for(
        lambda: settled(budget(kube, "chat-protocol"), healthy=2, allowed=1),
        180,
        1,
        what="the replacement protocol pod Ready, the budget restored",
    )
    assert second in {p["metadata"]["name"] for p in protocol_pods(kube)}
    wait_for(
        lambda: condition(channelapp(kube, CHAT_NAMESPACE, "chat"), "Ready") == "True",
        120,
        1,
        what="the app Ready again",
    )
