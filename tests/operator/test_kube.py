"""The operator's API calls: apply bodies a YAML parser reads back unchanged, object paths,
and lookups (objects, password Secrets) against the real control plane."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import kubernetes
import pytest
import yaml
from channelapp_operator import names as n
from channelapp_operator.kube import Kube, SecretMissing, SecretRefused, _path, yaml_json

if TYPE_CHECKING:
    from devtools.kube import KubeCluster


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "emoji \U0001f600 beyond the BMP",
        "é ü ß 中文",
        "line\nbreak\ttab",
        "C1 controls \x85 \x9f and DEL \x7f",
        "separators \u2028 \u2029",
        "non-characters \ufffe \uffff",
        'quotes " and \\ backslash',
        "",
    ],
)
def test_yaml_json_reads_back_as_the_same_value(value: str) -> None:
    body = {"metadata": {"annotations": {"k": value}}, "spec": {"env": [value], "n": 1}}
    raw = yaml_json(body)
    assert yaml.safe_load(raw.decode()) == body
    assert json.loads(raw) == body


def test_yaml_json_keeps_characters_beyond_the_bmp_whole() -> None:
    assert yaml_json({"v": "\U0001f600"}) == '{"v": "\U0001f600"}'.encode()
    assert yaml_json({"v": "\u2028"}) == b'{"v": "\\u2028"}'


@pytest.mark.parametrize(
    ("kind", "name", "want"),
    [
        ("Deployment", "web", "/apis/apps/v1/namespaces/ns/deployments/web"),
        ("StatefulSet", None, "/apis/apps/v1/namespaces/ns/statefulsets"),
        ("Service", "s", "/api/v1/namespaces/ns/services/s"),
        ("PodDisruptionBudget", "p", "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/p"),
        ("Secret", "pw", "/api/v1/namespaces/ns/secrets/pw"),
        (n.KIND, "chat", f"/apis/{n.GROUP}/{n.VERSION}/namespaces/ns/{n.PLURAL}/chat"),
    ],
)
def test_paths(kind: str, name: str | None, want: str) -> None:
    assert _path(kind, "ns", name) == want


def test_a_kind_it_does_not_manage_has_no_path() -> None:
    with pytest.raises(KeyError):
        _path("ConfigMap", "ns", "x")


def secret(name: str, type_: str | None, data: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    if type_ is not None:
        doc["type"] = type_
    return doc


@pytest.mark.cluster
def test_lookups_on_the_control_plane(kube_cluster: KubeCluster, namespace: str) -> None:
    kube = Kube(kubernetes.config.new_client_from_config(config_file=str(kube_cluster.kubeconfig)))
    for doc in (
        secret("opaque", None, {"password": "s3cr\u00e9t"}),
        secret("basic", "kubernetes.io/basic-auth", {"password": "b"}),
        secret("ssh", "kubernetes.io/ssh-auth", {"ssh-privatekey": "k"}),
    ):
        kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))

    assert kube.exists(f"/api/v1/namespaces/{namespace}")
    assert not kube.exists(f"/api/v1/namespaces/{namespace}/secrets/absent")
    assert kube.get("Secret", namespace, "absent") is None
    assert kube.get("Secret", namespace, "opaque")["metadata"]["name"] == "opaque"  # type: ignore[index]

    assert kube.secret_value(namespace, "opaque", "password") == "s3cr\u00e9t"
    assert kube.secret_value(namespace, "basic", "password") == "b"
    with pytest.raises(SecretMissing, match=f"secret {namespace}/absent not found"):
        kube.secret_value(namespace, "absent", "password")
    with pytest.raises(SecretMissing, match="has no key 'other'"):
        kube.secret_value(namespace, "opaque", "other")
    with pytest.raises(SecretRefused, match=r"kubernetes\.io/ssh-auth"):
        kube.secret_value(namespace, "ssh", "ssh-privatekey")
    # Not controlled by the app asking: its value is not read for it.
    with pytest.raises(SecretRefused):
        kube.secret_value(namespace, "opaque", "password", owner_uid="not-its-owner")
