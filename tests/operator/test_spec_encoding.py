"""Specs of any characters on the real control plane: an emoji reaches the pods, and the
largest spec the CRD accepts, of the characters JSON spends most bytes on, is recorded in
both spec annotations (kubectl's and the operator's) and reconciled with truthful status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.kube import KubeCluster
from devtools.operator import OperatorProcess
from devtools.polling import wait_for
from devtools.redis import RedisServer

pytestmark = [pytest.mark.cluster, pytest.mark.redis]

IMAGE = "ghcr.io/channelapp/channelapp:0.1.0"
LAST_HANDLED = "channelapp.dev/last-handled-configuration"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SPEC_CHARACTERS = 16384  # the CRD's cap on env, URLs, origins and channels together
# Six bytes of JSON each in kubectl's annotation (\u0001, \u003c, \u2028) or the operator's
# (\u0001), and characters beyond ASCII and the BMP.
WORST = "\x01<&\u2028\x7f\u00e9\U0001f600"


def app(name: str, url: str, env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "channelapp.dev/v1alpha1",
        "kind": "ChannelApp",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "app": "channelapp.examples.chat:app",
            "redis": {"external": {"urls": [url]}},
            "env": env,
        },
    }


def condition(cluster: KubeCluster, ns: str, name: str, type_: str) -> dict[str, Any] | None:
    found = cluster.kubectl_json("get", "channelapp", name, "-n", ns)
    conds = (found.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == type_), None)


def ready(cluster: KubeCluster, ns: str, name: str) -> dict[str, Any] | None:
    found = cluster.kubectl_json("get", "channelapp", name, "-n", ns)
    conds = {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}
    gen = found["metadata"]["generation"]
    done = conds.get("Progressing", {}).get("reason") == "RolloutComplete"
    up = conds.get("Ready", {}).get("status") == "True"
    current = (found.get("status") or {}).get("observedGeneration") == gen
    return found if done and up and current else None


def container_env(cluster: KubeCluster, ns: str, deployment: str) -> dict[str, str]:
    dep = cluster.kubectl_json("get", "deployment", deployment, "-n", ns)
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def apply(cluster: KubeCluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def test_an_emoji_in_env_reaches_the_pods(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    doc = app("smile", url, [{"name": "GREETING", "value": "hi 😀"}])
    doc["spec"]["protocol"] = {"env": [{"name": "GREETING", "value": "hi 😀"}]}
    apply(kube_cluster, namespace, doc)
    wait_for(lambda: ready(kube_cluster, namespace, "smile"), 90, what="Ready with an emoji")
    for deployment in ("smile-protocol", "smile-worker"):
        assert container_env(kube_cluster, namespace, deployment)["GREETING"] == "hi 😀"


def test_the_largest_spec_of_the_costliest_characters_is_recorded_and_reconciled(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    redis_server: RedisServer,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    room = SPEC_CHARACTERS - len(url)
    names = [f"V{i}" for i in range(8)]
    per_value = (room - sum(len(n) for n in names)) // len(names)
    values = [(WORST * per_value)[:per_value] for _ in names]
    values[-1] += "\x01" * (room - sum(len(n) for n in names) - per_value * len(names))
    env = [{"name": n, "value": v} for n, v in zip(names, values, strict=True)]
    assert sum(len(n) + len(v) for n, v in zip(names, values, strict=True)) + len(url) == 16384
    apply(kube_cluster, namespace, app("big", url, env))
    found = wait_for(lambda: ready(kube_cluster, namespace, "big"), 120, what="big app Ready")
    annotations = found["metadata"]["annotations"]
    assert json.loads(annotations[LAST_HANDLED])["spec"]["env"] == env
    assert json.loads(annotations[LAST_APPLIED])["spec"]["env"] == env
    got = container_env(kube_cluster, namespace, "big-worker")
    assert [got[n] for n in names] == values

    # A change to it is handled too: the annotation follows and the status stays truthful.
    env[0]["value"] = env[0]["value"][::-1]
    apply(kube_cluster, namespace, app("big", url, env))
    found = wait_for(
        lambda: (
            (f := ready(kube_cluster, namespace, "big"))
            and json.loads(f["metadata"]["annotations"][LAST_HANDLED])["spec"]["env"] == env
            and f
        ),
        120,
        what="the changed spec handled",
    )
    assert container_env(kube_cluster, namespace, "big-worker")["V0"] == env[0]["value"]
