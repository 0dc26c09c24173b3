"""Drift detection between a built child and the live object (pure)."""

from __future__ import annotations

import copy

from channelapp_operator import builders
from channelapp_operator.drift import drifted

SPEC = {
    "image": "example/app:1",
    "app": "chat.app:app",
    "redis": {"managed": {"shards": 1}},
    "protocol": {"resources": {"limits": {"cpu": 1}}},
}


def live_copy(manifest: dict) -> dict:  # type: ignore[type-arg]
    """The manifest as the server returns it: defaults added, quantities as strings."""
    live = copy.deepcopy(manifest)
    live["metadata"]["resourceVersion"] = "7"
    live["metadata"]["managedFields"] = []
    pod = live["spec"]["template"]["spec"]
    pod["dnsPolicy"] = "ClusterFirst"
    container = pod["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["ports"][0]["hostPort"] = None
    limits = container["resources"].get("limits")
    if limits:
        container["resources"]["limits"] = {k: str(v) for k, v in limits.items()}
    return live


def protocol() -> dict:  # type: ignore[type-arg]
    return builders.protocol_deployment("chat", "ns", "uid", SPEC)


def test_server_defaults_are_not_drift() -> None:
    assert not drifted(protocol(), live_copy(protocol()))


def test_changed_image_is_drift() -> None:
    live = live_copy(protocol())
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/image:1"
    assert drifted(protocol(), live)


def test_removed_env_and_extra_container_are_drift() -> None:
    live = live_copy(protocol())
    live["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    assert drifted(protocol(), live)
    live = live_copy(protocol())
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    assert drifted(protocol(), live)


def test_changed_label_or_service_port_is_drift() -> None:
    live = live_copy(protocol())
    live["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    assert drifted(protocol(), live)
    svc = builders.protocol_service("chat", "ns", "uid", SPEC)
    live_svc = copy.deepcopy(svc)
    live_svc["spec"]["clusterIP"] = "10.0.0.7"
    assert not drifted(svc, live_svc)
    live_svc["spec"]["ports"][0]["port"] = 9999
    assert drifted(svc, live_svc)
