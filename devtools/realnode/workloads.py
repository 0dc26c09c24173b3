"""What runs on the real node: the operator helm-installed from its image, ChannelApps applied
with the images built here and awaited Ready, and reading them back."""

from __future__ import annotations

import json
import time
from typing import Any

import yaml

from devtools.kube import KubeCluster
from devtools.paths import REPO
from devtools.polling import wait_for
from devtools.realnode.bringup import RealCluster

ROOT = REPO
OPERATOR_NAMESPACE = "channelapp-system"
RELEASE = "channelapp-operator"
CHAT_NAMESPACE = "chat"


def operator_pod(kube: KubeCluster) -> dict[str, Any]:
    pods = kube.kubectl_json(
        "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=channelapp-operator"
    )["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    pod: dict[str, Any] = running[0]
    return pod


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
    # The apps' protocol servers run the runtime image: the app image built here is it.
    runtime_repo, runtime_tag = cluster.image("app").rsplit(":", 1)
    kube.helm(
        "install", RELEASE, str(ROOT / "charts" / "channelapp-operator"),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.repository={repo}", "--set-string", f"image.tag={tag}",
        "--set", f"runtimeImage.repository={runtime_repo}",
        "--set-string", f"runtimeImage.tag={runtime_tag}",
        "--set", "image.pullPolicy=Never", "--wait", "--timeout", "180s",
        # One replica: these tests follow one operator pod (two replicas' takeover is tested
        # on the control plane, tests/operator/test_high_availability.py).
        "--set", "replicas=1",
    )  # fmt: skip
    wait_for(lambda: pod_ready(operator_pod(kube)), 120, 1, what="operator pod Ready")
    return kube


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
