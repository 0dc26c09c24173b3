"""Failures on real pods: a Redis shard pod dies, the operator pod dies."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devtools import realnode
from devtools.polling import wait_for
from devtools.realnode.bringup import RealCluster
from devtools.realnode.workloads import (
    CHAT_NAMESPACE,
    OPERATOR_NAMESPACE,
    channelapp,
    condition,
    operator_pod,
    pod_ready,
)

pytestmark = [pytest.mark.realnode, pytest.mark.cluster]


def test_deleting_a_shard_pod_degrades_then_recovers(
    real_cluster: RealCluster, chat_app: dict[str, Any]
) -> None:
    """The layer's retries ride out a restart of a few seconds, so the replacement pod is held
    back (node cordoned) until the operator has said Degraded; then it may start."""
    kube = real_cluster.kube
    assert condition(channelapp(kube, CHAT_NAMESPACE, "chat"), "Degraded") == "False"
    try:
        kube.kubectl("cordon", realnode.NODE)
        started = time.monotonic()
        kube.kubectl("delete", "pod", "chat-redis-1", "-n", CHAT_NAMESPACE, "--wait=false")
        wait_for(
            lambda: condition(channelapp(kube, CHAT_NAMESPACE, "chat"), "Degraded") == "True",
            120,
            1,
            what="the app Degraded with a shard gone",
        )
        degraded = time.monotonic() - started
        kube.kubectl("uncordon", realnode.NODE)
        wait_for(
            lambda: (
                (app := channelapp(kube, CHAT_NAMESPACE, "chat"))
                and condition(app, "Degraded") == "False"
                and condition(app, "Ready") == "True"
                and app["status"]["shards"]["summary"] == "2/2"
            ),
            120,
            1,
            what="the app recovered (Ready, not Degraded, 2/2 shards)",
        )
        recovered = time.monotonic() - started - degraded
    finally:
        kube.kubectl("uncordon", realnode.NODE, check=False)
    pod = kube.kubectl_json("get", "pod", "chat-redis-1", "-n", CHAT_NAMESPACE)
    assert pod["status"]["phase"] == "Running"
    print(f"\nshard pod deleted: Degraded after {degraded:.1f}s, recovered {recovered:.1f}s later")


def objects(cluster: RealCluster) -> list[str]:
    out = cluster.kube.kubectl(
        "get", "deployments,statefulsets,services,secrets", "-n", CHAT_NAMESPACE,
        "-l", "app.kubernetes.io/instance=chat", "-o", "name",
    ).stdout  # fmt: skip
    return sorted(out.split())


def test_deleting_the_operator_pod_duplicates_nothing_and_keeps_the_workers(
    real_cluster: RealCluster, chat_app: dict[str, Any]
) -> None:
    kube = real_cluster.kube
    kube.patch_channelapp(CHAT_NAMESPACE, "chat", {"spec": {"workers": {"minReplicas": 2}}})
    wait_for(
        lambda: (
            kube.kubectl_json("get", "deployment", "chat-worker", "-n", CHAT_NAMESPACE)[
                "status"
            ].get("readyReplicas")
            == 2
        ),
        120,
        1,
        what="two worker pods Ready",
    )
    before = objects(real_cluster)
    assert len(before) >= 5, before
    secret = kube.kubectl_json("get", "secret", "chat-secrets", "-n", CHAT_NAMESPACE)
    old = operator_pod(kube)["metadata"]["name"]
    kube.kubectl("delete", "pod", old, "-n", OPERATOR_NAMESPACE, "--wait=false")
    wait_for(
        lambda: (pod := operator_pod(kube))["metadata"]["name"] != old and pod_ready(pod),
        180,
        1,
        what="a new operator pod Ready",
    )
    # Give the new operator time to reconcile and run its autoscaling loop a few times.
    time.sleep(20)
    assert objects(real_cluster) == before
    deployment = kube.kubectl_json("get", "deployment", "chat-worker", "-n", CHAT_NAMESPACE)
    assert deployment["spec"]["replicas"] == 2
    # Same keys: a regenerated secret would end every session and lock out the shards.
    after = kube.kubectl_json("get", "secret", "chat-secrets", "-n", CHAT_NAMESPACE)
    assert (after["metadata"]["uid"], after["data"]) == (secret["metadata"]["uid"], secret["data"])
    app = channelapp(kube, CHAT_NAMESPACE, "chat")
    assert condition(app, "Ready") == "True"
