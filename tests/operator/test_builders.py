"""Child manifests built from a ChannelApp spec (pure)."""

from __future__ import annotations

import copy
import json

import pytest
from channelapp import __version__
from channelapp_operator import builders
from channelapp_operator import names as n

SPEC = {
    "image": "example/app:1",
    "app": "chat.app:app",
    "protocol": {"replicas": 2, "port": 8080, "serviceType": "ClusterIP", "allowedOrigins": ["*"]},
    "workers": {
        "minReplicas": 1,
        "maxReplicas": 5,
        "concurrency": 16,
        "terminationGracePeriodSeconds": 40,
    },
    # One pod per shard (replicated shards: tests/operator/test_redis_builders.py).
    "redis": {"managed": {"shards": 3, "image": "redis:7.4-alpine", "replicas": 0}},
    "env": [{"name": "EXTRA", "value": "1"}],
}


def env_of(manifest: dict) -> dict:  # type: ignore[type-arg]
    return {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_managed_shards_get_stable_dns_urls_in_order() -> None:
    urls = builders.shard_urls("chat", "ns", SPEC)
    assert urls == [f"redis://chat-redis-{i}.chat-redis.ns.svc:6379/0" for i in range(3)]


def test_external_urls_and_password_ref_pass_through() -> None:
    spec = {
        **SPEC,
        "redis": {"external": {"urls": ["rediss://a:1/0"], "passwordSecretRef": {"name": "s"}}},
    }
    assert builders.shard_urls("chat", "ns", spec) == ["rediss://a:1/0"]
    assert builders.password_ref("chat", spec) == {"name": "s", "key": "password"}
    children = builders.children("chat", "ns", "uid", spec)
    assert "StatefulSet" not in [m["kind"] for m in children]
    assert "chat-redis" not in [m["metadata"]["name"] for m in children]
    assert builders.stale_children(spec) == [
        ("PodDisruptionBudget", n.SENTINEL),
        ("StatefulSet", n.SENTINEL),
        ("PodDisruptionBudget", n.REDIS),
        ("StatefulSet", n.REDIS),
        ("Service", n.REDIS),
    ]
    assert builders.stale_children(SPEC) == []


def test_children_are_owned_labelled_and_ordered() -> None:
    children = builders.children("chat", "ns", "uid-1", SPEC)
    assert [(m["kind"], m["metadata"]["name"]) for m in children] == [
        ("Service", "chat-redis"),
        ("StatefulSet", "chat-redis"),
        ("PodDisruptionBudget", "chat-redis"),
        ("Service", "chat"),
        ("Deployment", "chat-protocol"),
        ("PodDisruptionBudget", "chat-protocol"),
        ("Deployment", "chat-worker"),
        ("PodDisruptionBudget", "chat-worker"),
    ]
    for m in children:
        (owner,) = m["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-1" and owner["controller"] is True
        assert m["metadata"]["labels"][n.LABEL_MANAGED_BY] == n.MANAGER


def test_worker_deployment_leaves_replicas_to_the_autoscaler() -> None:
    worker = builders.worker_deployment("chat", "ns", "uid", SPEC)
    assert "replicas" not in worker["spec"]
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 40
    env = env_of(worker)
    assert env["CHANNELAPP_SHUTDOWN_TIMEOUT"]["value"] == "35"
    assert env["CHANNELAPP_WORKER_CONCURRENCY"]["value"] == "16"
    assert env["CHANNELAPP_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "chat-secrets"
    assert env["EXTRA"]["value"] == "1"
    assert pod["containers"][0]["args"][:2] == ["worker", "chat.app:app"]


def test_protocol_deployment_and_service() -> None:
    proto = builders.protocol_deployment("chat", "ns", "uid", SPEC)
    assert proto["spec"]["replicas"] == 2
    container = proto["spec"]["template"]["spec"]["containers"][0]
    # No app: the runtime serves it with the settings the app's workers publish.
    assert container["args"] == ["protocol", "--host", "0.0.0.0", "--port", "8080"]
    assert env_of(proto)["CHANNELAPP_ALLOWED_ORIGINS"]["value"] == "*"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    svc = builders.protocol_service("chat", "ns", "uid", SPEC)
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert svc["spec"]["selector"] == n.selector("chat", n.PROTOCOL)


def test_every_pod_meets_pod_security_restricted() -> None:
    for manifest in builders.children("chat", "ns", "uid", SPEC):
        if manifest["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_a_django_project_is_loaded_by_the_workers_only() -> None:
    spec = {**SPEC, "app": "django:mysite.settings"}
    proto = builders.protocol_deployment("site", "ns", "uid", spec)
    worker = builders.worker_deployment("site", "ns", "uid", spec)
    proto_args = proto["spec"]["template"]["spec"]["containers"][0]["args"]
    worker_args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert proto_args == ["protocol", "--host", "0.0.0.0", "--port", "8080"]
    assert worker_args[:2] == ["worker", "django:mysite.settings"]


def container_of(manifest: dict) -> dict:  # type: ignore[type-arg]
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_protocol_pods_run_the_runtime_image_of_the_operator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHANNELAPP_RUNTIME_IMAGE", raising=False)
    proto = container_of(builders.protocol_deployment("chat", "ns", "uid", SPEC))
    assert proto["image"] == f"ghcr.io/channelapp/channelapp:{__version__}"
    assert proto["imagePullPolicy"] == "IfNotPresent"
    monkeypatch.setenv("CHANNELAPP_RUNTIME_IMAGE", "registry.example/runtime:7")
    proto = container_of(builders.protocol_deployment("chat", "ns", "uid", SPEC))
    assert proto["image"] == "registry.example/runtime:7"
    # spec.protocol.image overrides, with its own pull policy; the workers keep spec.image.
    spec = {
        **SPEC,
        "imagePullPolicy": "Never",
        "protocol": {**SPEC["protocol"], "image": "mine/runtime:2", "imagePullPolicy": "Always"},
    }
    proto = container_of(builders.protocol_deployment("chat", "ns", "uid", spec))
    assert (proto["image"], proto["imagePullPolicy"]) == ("mine/runtime:2", "Always")
    worker = container_of(builders.worker_deployment("chat", "ns", "uid", spec))
    assert (worker["image"], worker["imagePullPolicy"]) == ("example/app:1", "Never")


def test_env_goes_to_workers_and_protocol_env_to_protocol_pods() -> None:
    spec = {
        **SPEC,
        "env": [{"name": "CHANNELAPP_MAX_BODY_SIZE", "value": "10"}],
        "protocol": {
            **SPEC["protocol"],
            "env": [{"name": "CHANNELAPP_READ_TIMEOUT", "value": "3"}],
        },
    }
    proto = env_of(builders.protocol_deployment("chat", "ns", "uid", spec))
    worker = env_of(builders.worker_deployment("chat", "ns", "uid", spec))
    assert proto["CHANNELAPP_READ_TIMEOUT"]["value"] == "3"
    assert "CHANNELAPP_MAX_BODY_SIZE" not in proto
    assert worker["CHANNELAPP_MAX_BODY_SIZE"]["value"] == "10"
    assert "CHANNELAPP_READ_TIMEOUT" not in worker
    # Both reach Redis under the app's prefix, with its session key.
    for env in (proto, worker):
        assert env["CHANNELAPP_KEY_PREFIX"]["value"] == "channelapp.ns.chat"
        assert env["CHANNELAPP_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "chat-secrets"


def test_an_app_deploy_leaves_the_protocol_pod_template_as_it_is() -> None:
    """A new image, app object or worker env changes the worker's pod template only: the
    protocol Deployment does not roll, and no socket is dropped."""
    deployed = copy.deepcopy(SPEC)
    changed = copy.deepcopy(SPEC)
    changed["image"] = "example/app:2"
    changed["imagePullPolicy"] = "Always"
    changed["app"] = "django:chatsite.settings"
    changed["env"] = [{"name": "EXTRA", "value": "2"}, {"name": "MORE", "value": "3"}]

    def templates(spec: dict) -> tuple[str, str]:  # type: ignore[type-arg]
        proto = builders.protocol_deployment("chat", "ns", "uid", spec)
        worker = builders.worker_deployment("chat", "ns", "uid", spec)
        return (
            json.dumps(proto["spec"]["template"], sort_keys=True),
            json.dumps(worker["spec"]["template"], sort_keys=True),
        )

    proto_before, worker_before = templates(deployed)
    proto_after, worker_after = templates(changed)
    assert proto_after == proto_before
    assert worker_after != worker_before
    for field in ("image", "app", "env"):  # each on its own too
        proto_one, worker_one = templates({**deployed, field: changed[field]})
        assert proto_one == proto_before and worker_one != worker_before, field


def test_protocol_pods_roll_with_surge_and_drain_gently() -> None:
    proto = builders.protocol_deployment("chat", "ns", "uid", SPEC)
    assert proto["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = proto["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The kubelet's own sleep (no binary in the image), before SIGTERM.
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert env_of(proto)["CHANNELAPP_DRAIN_SECONDS"]["value"] == "30"  # the CRD's default
    # preStop + drain + margin: the drain ends well before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] == 5 + 30 + 10
    spec = {**SPEC, "protocol": {**SPEC["protocol"], "drainSeconds": 120}}
    proto = builders.protocol_deployment("chat", "ns", "uid", spec)
    assert env_of(proto)["CHANNELAPP_DRAIN_SECONDS"]["value"] == "120"
    assert proto["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 135
    spec = {**SPEC, "protocol": {**SPEC["protocol"], "drainSeconds": 0}}
    proto = builders.protocol_deployment("chat", "ns", "uid", spec)
    assert env_of(proto)["CHANNELAPP_DRAIN_SECONDS"]["value"] == "0"
    assert proto["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 15
    # Workers drain their messages, not sockets: no drain window, no preStop.
    worker = builders.worker_deployment("chat", "ns", "uid", SPEC)
    assert "CHANNELAPP_DRAIN_SECONDS" not in env_of(worker)
    assert "lifecycle" not in worker["spec"]["template"]["spec"]["containers"][0]


def test_disruption_budgets_cover_each_workload() -> None:
    children = builders.children("chat", "ns", "uid-1", SPEC)
    workloads = {
        m["metadata"]["name"]: m for m in children if m["kind"] in ("Deployment", "StatefulSet")
    }
    budgets = {m["metadata"]["name"]: m for m in children if m["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == set(workloads) == {"chat-redis", "chat-protocol", "chat-worker"}
    for name, pdb in budgets.items():
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["maxUnavailable"] == 1
        # Exactly the pods of its workload.
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector == workloads[name]["spec"]["selector"]["matchLabels"]
        pod_labels = workloads[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        (owner,) = pdb["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-1" and owner["controller"] is True
        assert pdb["metadata"]["labels"] == workloads[name]["metadata"]["labels"]
