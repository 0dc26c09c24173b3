"""spec.protocol.image, imagePullPolicy and env in a real API server: env follows spec.env's
rules (operator-set names refused, the spec's size cap), and the chart's admission policy
checks the Secrets and ConfigMaps it names as it checks spec.env's."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devtools.kube import KubeCluster
from tests.operator import test_tenant_admission as admission
from tests.operator.test_crd import OPERATOR_ENV, create, with_spec
from tests.operator.test_tenant_admission import POLICY, app, config_map_env, secret_env
from tests.operator.test_tenant_admission import create as create_as


@pytest.fixture(scope="module")
def tenancy_policy(kube_cluster: KubeCluster, channelapp_crd: str) -> Iterator[str]:
    """The chart's admission policy, installed as tests/operator/test_tenant_admission.py does."""
    yield from admission.tenancy_policy.__wrapped__(kube_cluster, channelapp_crd)


@pytest.fixture
def tenant(kube_cluster: KubeCluster, namespace: str, tenancy_policy: str) -> dict[str, str]:
    """A restricted author (ChannelApp rights alone) and an editor, as that module makes them."""
    made: dict[str, str] = admission.tenant.__wrapped__(kube_cluster, namespace, tenancy_policy)
    return made


pytestmark = pytest.mark.cluster

INVALID = {
    **{
        f"protocol-env-set-by-operator-{name}": (
            with_spec(
                protocol={"env": [{"name": "OK", "value": "1"}, {"name": name, "value": "x"}]}
            ),
            "spec.protocol.env[1].name",
            f"{name} is set by the operator itself",
        )
        for name in OPERATOR_ENV
    },
    "protocol-env-value-and-value-from": (
        with_spec(
            protocol={
                "env": [
                    {
                        "name": "A",
                        "value": "1",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                    }
                ]
            }
        ),
        "spec.protocol.env[0]",
        "set value or valueFrom, not both",
    ),
    "protocol-env-int-value": (
        with_spec(protocol={"env": [{"name": "LIMIT", "value": 500}]}),
        "spec.protocol.env[0].value",
        "must be of type string",
    ),
    "protocol-pull-policy": (
        with_spec(protocol={"imagePullPolicy": "Sometimes"}),
        "spec.protocol.imagePullPolicy",
        "Unsupported value",
    ),
    "protocol-empty-image": (
        with_spec(protocol={"image": ""}),
        "spec.protocol.image",
        "at least 1 chars",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_protocol_fields_are_refused_naming_the_field(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str, case: str
) -> None:
    obj, field, message = INVALID[case]
    proc = kube_cluster.kubectl(
        "apply", "-n", namespace, "--validate=strict", "-f", "-",
        input=json.dumps(obj), check=False,
    )  # fmt: skip
    assert proc.returncode != 0, f"{case} was accepted"
    assert field in proc.stderr and message in proc.stderr, proc.stderr


def test_protocol_image_pull_policy_and_env_are_accepted(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    protocol = {
        "image": "registry.example/channelapp:9",
        "imagePullPolicy": "Always",
        "env": [
            {"name": "CHANNELAPP_ALLOWED_HOSTS", "value": "chat.example"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    }
    # A name may be in both lists: each goes to its own pods.
    obj = with_spec(protocol=protocol, env=[{"name": "CHANNELAPP_ALLOWED_HOSTS", "value": "x"}])
    proc = create(kube_cluster, namespace, obj)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(
        kube_cluster.kubectl("get", "channelapp", "bad", "-n", namespace, "-o", "json").stdout
    )
    assert got["spec"]["protocol"]["image"] == protocol["image"]
    assert got["spec"]["protocol"]["env"] == protocol["env"]


def test_protocol_env_counts_towards_the_spec_size_cap(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    env = [{"name": "BIG_0", "value": "x" * 10_000}]
    protocol_env = [{"name": "BIG_1", "value": "x" * 10_000}]
    proc = create(kube_cluster, namespace, with_spec(env=env, protocol={"env": protocol_env}))
    assert proc.returncode != 0
    assert "the spec is too large" in proc.stderr, proc.stderr
    # Each alone fits.
    proc = create(kube_cluster, namespace, with_spec(protocol={"env": protocol_env}))
    assert proc.returncode == 0, proc.stderr


HOSTILE = {
    "protocol-env-secret": (
        app(protocol={"env": [{"name": "PLAIN", "value": "x"}, *secret_env("db")]}),
        "spec.protocol.env[1].valueFrom.secretKeyRef.name",
        "may not get Secret db",
    ),
    "protocol-env-configmap": (
        app(protocol={"env": config_map_env("cfg")}),
        "spec.protocol.env[0].valueFrom.configMapKeyRef.name",
        "may not get ConfigMap cfg",
    ),
    # A name spec.env has too: the refusal names the protocol list.
    "same-name-in-both-lists": (
        app(
            env=[{"name": "FROM_0", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            protocol={"env": secret_env("db")},
        ),
        "spec.protocol.env[0].valueFrom.secretKeyRef.name",
        "may not get Secret db",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_protocol_env_references_are_checked_against_the_author(
    kube_cluster: KubeCluster, tenant: dict[str, str], case: str
) -> None:
    obj, field, right = HOSTILE[case]
    ok, reply = create_as(kube_cluster, tenant["ns"], obj, tenant["restricted"])
    assert not ok, f"{case} was accepted"
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in reply, reply
    assert f"{field}: {tenant['restricted']} {right}" in reply, reply
    ok, reply = create_as(kube_cluster, tenant["ns"], obj, tenant["editor"])
    assert ok, reply


def test_an_object_named_in_both_lists_is_checked_under_either_name(
    kube_cluster: KubeCluster, tenant: dict[str, str]
) -> None:
    """spec.env's FROM_0 reads Secret cfg (allowed below), spec.protocol.env's FROM_0 reads
    Secret db: a dedupe by variable name alone would let db through unchecked."""
    ns, restricted = tenant["ns"], tenant["restricted"]
    kube_cluster.kubectl("create", "secret", "generic", "open", "-n", ns, "--from-literal=k=v")
    kube_cluster.kubectl(
        "create", "role", "read-open", "-n", ns, "--verb=get", "--resource=secrets",
        "--resource-name=open",
    )  # fmt: skip
    kube_cluster.kubectl(
        "create", "rolebinding", "read-open", "-n", ns, "--role=read-open",
        f"--serviceaccount={ns}:author",
    )  # fmt: skip
    allowed = app("allowed", env=secret_env("open"), protocol={"env": secret_env("open")})
    ok, reply = create_as(kube_cluster, ns, allowed, restricted)
    assert ok, reply
    mixed = app("mixed", env=secret_env("open"), protocol={"env": secret_env("db")})
    ok, reply = create_as(kube_cluster, ns, mixed, restricted)
    assert not ok
    assert "spec.protocol.env[0].valueFrom.secretKeyRef.name" in reply, reply
