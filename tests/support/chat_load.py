"""The chat example under load on the real node: its pods, their rollouts, its Service's URL."""

from __future__ import annotations

from typing import Any

from devtools.kube import KubeCluster
from devtools.realnode.workloads import CHAT_NAMESPACE


def pods(kube: KubeCluster, component: str) -> list[dict[str, Any]]:
    items = kube.kubectl_json(
        "get", "pods", "-n", CHAT_NAMESPACE,
        "-l", f"app.kubernetes.io/instance=chat,app.kubernetes.io/component={component}",
    )["items"]  # fmt: skip
    return list(items)


def uids(found: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["uid"] for p in found}


def rolled_out(kube: KubeCluster, component: str, image: str) -> bool:
    """The rollout of the ``component`` Deployment (``worker``, ``protocol``) to ``image`` is
    over: every pod runs it, is ready, and no other pod is left, stopping or not."""
    dep = kube.kubectl_json("get", "deployment", f"chat-{component}", "-n", CHAT_NAMESPACE)
    status = dep.get("status") or {}
    if status.get("observedGeneration") != dep["metadata"]["generation"]:
        return False
    found = pods(kube, component)
    return bool(found) and all(
        p["spec"]["containers"][0]["image"] == image
        and not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions", [])
        )
        for p in found
    )


def service_url(kube: KubeCluster) -> str:
    svc = kube.kubectl_json("get", "service", "chat", "-n", CHAT_NAMESPACE)
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
