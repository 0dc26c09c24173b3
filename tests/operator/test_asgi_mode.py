"""ChannelApps naming a Channels 4 project (``app: asgi:MODULE:ATTR``): the protocol pods
serve it from spec.image (``channelapp asgi``), worker pods exist only for
``workers.channels`` (``channelapp runworker``), and those channels are what the policy counts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from channelapp_operator import builders
from channelapp_operator import names as n
from channelapp_operator.children_status import Workload
from channelapp_operator.decide import counted_channels
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.status import StatusInputs, compute_status

from devtools.kube import KubeCluster

SPEC: dict[str, Any] = {
    "image": "example/mysite:1",
    "imagePullPolicy": "Never",
    "app": "asgi:mysite.asgi:application",
    "protocol": {"port": 8080, "env": [{"name": "PROTO_ONLY", "value": "1"}]},
    "workers": {"concurrency": 4, "channels": ["thumbnails", "mail.out"]},
    "redis": {"managed": {"shards": 2}},
    "env": [{"name": "DJANGO_ALLOWED_HOSTS", "value": "mysite.example.com"}],
}


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return c


def env_names(c: dict[str, Any]) -> list[str]:
    return [e["name"] for e in c["env"]]


def test_protocol_pods_serve_the_project_from_its_image() -> None:
    proto = container(builders.protocol_deployment("mysite", "ns", "uid", SPEC))
    assert proto["image"] == "example/mysite:1"
    assert proto["imagePullPolicy"] == "Never"
    assert proto["args"] == [
        "asgi", "mysite.asgi:application", "--host", "0.0.0.0", "--port", "8080",
    ]  # fmt: skip
    names = env_names(proto)
    # The project's env, the operator's (shards, prefix), the drain, protocol.env last.
    for name in ("CHANNELAPP_DRAIN_SECONDS", "CHANNELAPP_REDIS_URLS", "CHANNELAPP_KEY_PREFIX",
                 "DJANGO_ALLOWED_HOSTS", "PROTO_ONLY"):  # fmt: skip
        assert name in names
    assert names[-1] == "PROTO_ONLY"
    assert len(names) == len(set(names))


def test_a_split_app_keeps_the_runtime_image_on_its_protocol_pods() -> None:
    split = {**SPEC, "app": "mysite.app:app"}
    proto = container(builders.protocol_deployment("mysite", "ns", "uid", split))
    assert proto["args"][0] == "protocol"
    assert proto["image"] != "example/mysite:1"
    assert "DJANGO_ALLOWED_HOSTS" not in env_names(proto)


def test_workers_run_runworker_on_the_named_channels() -> None:
    worker = container(builders.worker_deployment("mysite", "ns", "uid", SPEC))
    assert worker["image"] == "example/mysite:1"
    assert worker["args"] == [
        "runworker", "mysite.asgi:application", "thumbnails", "mail.out",
        "--concurrency", "4", "--metrics-host", "0.0.0.0", "--metrics-port",
        str(n.WORKER_METRICS_PORT),
    ]  # fmt: skip
    assert {"name": "CHANNELAPP_SHUTDOWN_TIMEOUT", "value": "25"} in worker["env"]
    kinds = [
        (m["kind"], m["metadata"]["name"]) for m in builders.children("mysite", "ns", "u", SPEC)
    ]
    assert ("Deployment", "mysite-worker") in kinds
    assert ("PodDisruptionBudget", "mysite-worker") in kinds
    assert builders.stale_children(SPEC) == []
    assert counted_channels(SPEC)[-2:] == ["thumbnails", "mail.out"]


def test_no_background_channels_no_workers() -> None:
    spec = copy.deepcopy(SPEC)
    spec["workers"]["channels"] = []
    kinds = [
        (m["kind"], m["metadata"]["name"]) for m in builders.children("mysite", "ns", "u", spec)
    ]
    assert not [k for k in kinds if k[1] == "mysite-worker"]
    assert ("Deployment", "mysite-protocol") in kinds or ("Deployment", "mysite") in kinds
    # A worker Deployment left from before (split mode, or channels removed) goes.
    stale = builders.stale_children(spec)
    assert ("Deployment", n.WORKER) in stale and ("PodDisruptionBudget", n.WORKER) in stale
    assert n.stale_child_name("mysite", n.WORKER) == "mysite-worker"
    assert builders.wants_workers({"app": "chat.app:app"})


def test_ready_without_worker_pods_when_none_are_wanted() -> None:
    spec = copy.deepcopy(SPEC)
    spec["workers"]["channels"] = []
    spec["redis"] = {"external": {"urls": ["redis://r:6379/0"]}}
    status = compute_status(
        StatusInputs(
            name="mysite",
            namespace="ns",
            spec=spec,
            generation=1,
            previous={},
            workloads={n.PROTOCOL: Workload(1, 1, 1, 1, 1, 1)},
            reading=DepthReading(depth=0),
            desired=None,
            apply_failure=None,
            load=None,
            last_scale=None,
        )
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", status


def channelapp(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "channelapp.dev/v1alpha1",
        "kind": "ChannelApp",
        "metadata": {"name": name},
        "spec": {"image": "example/mysite:1", **spec},
    }


@pytest.mark.cluster
def test_the_crd_takes_asgi_apps_and_checks_their_channels(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    good = channelapp(
        "mysite", app="asgi:mysite.asgi:application", workers={"channels": ["thumbnails"]}
    )
    kube_cluster.kubectl(
        "apply", "-n", namespace, "--validate=strict", "-f", "-", input=json.dumps(good)
    )  # fmt: skip
    spec = kube_cluster.kubectl_json("get", "channelapp", "mysite", "-n", namespace)["spec"]
    assert spec["app"] == "asgi:mysite.asgi:application"
    assert spec["workers"]["channels"] == ["thumbnails"]
    for name, spec_, field in (
        ("no-attr", {"app": "asgi:mysite.asgi"}, "spec.app"),
        ("twice", {"app": "asgi:asgi:mysite.asgi:application"}, "spec.app"),
        ("other", {"app": "wsgi:mysite.wsgi:application"}, "spec.app"),
        (
            "bad-channel",
            {"app": "asgi:mysite.asgi:application", "workers": {"channels": ["no spaces"]}},
            "spec.workers.channels[0]",
        ),
        (
            "specific",
            {"app": "asgi:mysite.asgi:application", "workers": {"channels": ["a!b"]}},
            "spec.workers.channels[0]",
        ),
    ):
        proc = kube_cluster.kubectl(
            "apply", "-n", namespace, "--validate=strict", "-f", "-",
            input=json.dumps(channelapp(name, **spec_)), check=False,
        )  # fmt: skip
        assert proc.returncode != 0, f"{name} was accepted"
        assert field in proc.stderr, proc.stderr
