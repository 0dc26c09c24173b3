"""examples/chat.yaml on real pods: Ready, true columns, and chat through the protocol Service."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devtools.realnode.bringup import RealCluster
from devtools.realnode.workloads import CHAT_NAMESPACE, channelapp
from tests.support.chat_page import page_result, start_chat_page

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.browser]


def service_url(cluster: RealCluster, ns: str, name: str) -> str:
    svc = cluster.kube.kubectl_json("get", "service", name, "-n", ns)
    port = svc["spec"]["ports"][0]["port"]
    return f"http://{svc['spec']['clusterIP']}:{port}"


def test_chat_ready_with_true_columns(real_cluster: RealCluster, chat_app: dict[str, Any]) -> None:
    kube = real_cluster.kube
    out = kube.kubectl("get", "channelapps", "-n", CHAT_NAMESPACE, "--no-headers").stdout.split()
    # NAME READY WORKERS QUEUE SHARDS AGE
    assert out[:5] == ["chat", "True", "1/1", "0", "2/2"], out
    pods = kube.kubectl_json("get", "pods", "-n", CHAT_NAMESPACE)["items"]
    assert len(pods) == 5, [p["metadata"]["name"] for p in pods]  # 2 protocol, 1 worker, 2 Redis
    for pod in pods:
        assert pod["spec"]["nodeName"] == "real-node-0"
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("10.88."), pod["status"]
    app = channelapp(kube, CHAT_NAMESPACE, "chat")
    assert app["status"]["shards"]["summary"] == "2/2"


def test_app_pods_carry_no_service_account_token(
    real_cluster: RealCluster, chat_app: dict[str, Any]
) -> None:
    pods = real_cluster.kube.kubectl_json("get", "pods", "-n", CHAT_NAMESPACE)["items"]
    assert len(pods) == 5, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        name, spec = pod["metadata"]["name"], pod["spec"]
        assert spec.get("automountServiceAccountToken") is False, name
        # The API server's ServiceAccount admission adds this projected volume to pods
        # that mount a token; none is there.
        volumes = [v["name"] for v in spec.get("volumes") or []]
        assert not [v for v in volumes if v.startswith("kube-api-access-")], (name, volumes)
        for container in spec["containers"]:
            mounts = [m["mountPath"] for m in container.get("volumeMounts") or []]
            assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts, (name, mounts)


def test_protocol_service_serves_the_page_from_the_host(
    real_cluster: RealCluster, chat_app: dict[str, Any]
) -> None:
    url = service_url(real_cluster, CHAT_NAMESPACE, "chat")
    with urllib.request.urlopen(url + "/readyz", timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(url + "/", timeout=10) as resp:
        assert b"<!doctype html>" in resp.read().lower()


def test_two_chromium_tabs_chat_through_the_service(
    real_cluster: RealCluster, chat_app: dict[str, Any], tmp_path: Path
) -> None:
    screenshot = tmp_path / "chat-real-node.png"
    url = service_url(real_cluster, CHAT_NAMESPACE, "chat")
    page = start_chat_page(url, screenshot)
    try:
        out, err = page.communicate(timeout=180)
    finally:
        if page.poll() is None:
            page.kill()
            page.wait()
    assert page.returncode == 0, out + err
    result = page_result(out)
    assert result["ok"] and result["text"] in result["bobLog"], result
    assert "alice" in result["bobLog"]
