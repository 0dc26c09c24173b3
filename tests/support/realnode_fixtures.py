"""Pytest fixtures of the real-node tier: a control plane with a real node, the operator installed
by helm from its own image, and the chat example running on real pods.

``real_cluster`` (session) builds what is missing (hack/cluster/build-node.sh, hack/images/build.sh;
both cached) and starts :mod:`tests.support.realnode`; a missing tool fails the tier, it never
skips. ``real_operator`` helm-installs charts/channelapp-operator with the operator image;
``chat_app`` applies examples/chat.yaml with the app and Redis images.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import realnode
from tests.support.cluster_fixtures import KubeCluster
from tests.support.controlplane import ensure_tools
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "channelapp-system"
RELEASE = "channelapp-operator"
CHAT_NAMESPACE = "chat"


@dataclass
class RealCluster:
    kube: KubeCluster
    node: realnode.RealNode
    images: dict[str, realnode.Image]

    def image(self, name: str) -> str:
        return self.images[name].ref


@contextlib.contextmanager
def started_real_cluster() -> Iterator[RealCluster]:
    """The control plane with a real node joined, the project's images on it; stopped after."""
    ensure_tools()
    missing = realnode.missing_tools()
    if any("build-node.sh" in m for m in missing):
        realnode.build_node_tools()
    images = realnode.build_images()
    plane, node = realnode.start_for_tests(images)
    kube = KubeCluster(
        plane.kubeconfig,
        plane.bin_dir,
        str(plane.bin_dir / "kubectl"),
        str(plane.bin_dir / "helm"),
        plane,
    )
    try:
        yield RealCluster(kube, node, images)
    finally:
        node.stop()
        plane.stop()


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    with started_real_cluster() as cluster:
        yield cluster


def operator_pod(kube: KubeCluster) -> dict[str, Any]:
    pods = kube.kubectl_json(
        "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=channelapp-operator"
    )["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return running[0]


def default_service_account(kube: KubeCluster, ns: str) -> None:
    """Wait for the service-account controller's "default" in a new namespace (pods need it).

    Polled: ``kubectl wait`` fails at once, not after its timeout, on an object that does
    not exist yet.
    """
    wait_for(
        lambda: (
            kube.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0
        ),
        30,
        0.2,
        what=f"serviceaccount default in {ns}",
    )


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def install_operator(cluster: RealCluster) -> KubeCluster:
    """``helm install`` the chart with the operator image built here; wait for its pod."""
    kube = cluster.kube
    repo, tag = cluster.image("operator").rsplit(":", 1)
    kube.helm(
        "install", RELEASE, str(ROOT / "charts" / "channelapp-operator"),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.repository={repo}", "--set-string", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--wait", "--timeout", "180s",
        # One replica: these tests follow one operator pod (two replicas' takeover is tested
        # on the control plane, tests/operator/test_high_availability.py).
        "--set", "replicas=1",
    )  # fmt: skip
    wait_for(lambda: pod_ready(operator_pod(kube)), 120, 1, what="operator pod Ready")
    return kube


@pytest.fixture(scope="session")
def real_operator(real_cluster: RealCluster) -> KubeCluster:
    return install_operator(real_cluster)


def example_with_test_images(cluster: RealCluster, name: str = "chat.yaml") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    doc["spec"]["image"] = cluster.image("app")
    doc["spec"]["imagePullPolicy"] = "Never"
    doc["spec"]["redis"]["managed"]["image"] = cluster.image("redis")
    return doc


def channelapp(kube: KubeCluster, ns: str, name: str) -> dict[str, Any]:
    return kube.kubectl_json("get", "channelapp", name, "-n", ns)


def condition(app: dict[str, Any], type_: str) -> str:
    for c in app.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return str(c["status"])
    return "Unknown"


def apply_and_wait_ready(
    cluster: RealCluster, ns: str, doc: dict[str, Any], timeout: float = 240
) -> float:
    """Apply a ChannelApp in a new namespace; seconds until Ready=True and Degraded=False."""
    kube = cluster.kube
    if kube.kubectl("get", "namespace", ns, check=False).returncode != 0:
        kube.kubectl("create", "namespace", ns)
    default_service_account(kube, ns)
    started = time.monotonic()
    kube.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc))
    name = doc["metadata"]["name"]
    # Ready (every replica ready) and not Degraded (the operator reads every shard).
    wait_for(
        lambda: (
            (app := channelapp(kube, ns, name))
            and condition(app, "Ready") == "True"
            and condition(app, "Degraded") == "False"
        ),
        timeout,
        1,
        what=f"ChannelApp {ns}/{name} Ready and not Degraded",
    )
    return time.monotonic() - started


@pytest.fixture(scope="session")
def chat_app(real_cluster: RealCluster, real_operator: KubeCluster) -> dict[str, Any]:
    """examples/chat.yaml (2 protocol servers, managed Redis with 2 shards) Ready on real pods."""
    doc = example_with_test_images(real_cluster)
    seconds = apply_and_wait_ready(real_cluster, CHAT_NAMESPACE, doc)
    print(f"\nchat example Ready on real pods in {seconds:.1f}s")
    return doc
