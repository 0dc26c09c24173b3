"""The ChannelApp CRD in a real API server: defaults, printer columns, and refusals naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from devtools.kube import KubeCluster
from devtools.operator import CRD, EXAMPLES, load_example

pytestmark = pytest.mark.cluster

BASE: dict[str, Any] = {
    "apiVersion": "channelapp.dev/v1alpha1",
    "kind": "ChannelApp",
    "metadata": {"name": "bad"},
    "spec": {"image": "example/app:1", "app": "chat.app:app"},
}


def with_spec(**changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = obj["spec"]
        *path, last = dotted.split("__")
        for part in path:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return obj


_DELETE = object()


def named(name: str) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["metadata"]["name"] = name
    return obj


# The env builders.py gives every app container (the operator's own settings).
OPERATOR_ENV = [
    "CHANNELAPP_REDIS_URLS",
    "CHANNELAPP_KEY_PREFIX",
    "CHANNELAPP_SECRET_KEY",
    "CHANNELAPP_REDIS_PASSWORD",
    "CHANNELAPP_ALLOWED_ORIGINS",
    "CHANNELAPP_WORKER_CONCURRENCY",
    "CHANNELAPP_SHUTDOWN_TIMEOUT",
    "CHANNELAPP_DRAIN_SECONDS",
]


INVALID = {
    "min-above-max": (
        with_spec(workers={"minReplicas": 5, "maxReplicas": 2}),
        "spec.workers.minReplicas",
        "minReplicas must be less than or equal",
    ),
    "zero-utilization": (
        with_spec(workers={"targetUtilization": 0}),
        "spec.workers.targetUtilization",
        "targetUtilization must be within 0.05..1",
    ),
    "utilization-above-one": (
        with_spec(workers={"targetUtilization": 1.5}),
        "spec.workers.targetUtilization",
        "less than or equal to 1",
    ),
    "zero-queue-wait": (
        with_spec(workers={"targetQueueWaitSeconds": 0}),
        "spec.workers.targetQueueWaitSeconds",
        "targetQueueWaitSeconds must be at least 0.01",
    ),
    "zero-shards": (
        with_spec(redis={"managed": {"shards": 0}}),
        "spec.redis.managed.shards",
        "greater than or equal to 1",
    ),
    "too-many-shards": (
        with_spec(redis={"managed": {"shards": 65}}),
        "spec.redis.managed.shards",
        "less than or equal to 64",
    ),
    "both-redis": (
        with_spec(redis={"managed": {}, "external": {"urls": ["redis://r:6379/0"]}}),
        "spec.redis",
        "exactly one of redis.managed and redis.external",
    ),
    "no-redis": (with_spec(redis={}), "spec.redis", "exactly one of redis.managed"),
    "missing-image": (with_spec(image=_DELETE), "spec.image", "Required value"),
    "bad-app-path": (with_spec(app="chat"), "spec.app", "should match"),
    "django-without-settings": (with_spec(app="django:"), "spec.app", "should match"),
    "django-bad-settings-module": (with_spec(app="django:1bad"), "spec.app", "should match"),
    "http-url": (
        with_spec(redis={"external": {"urls": ["http://r:6379"]}}),
        "spec.redis.external.urls[0]",
        "should match",
    ),
    "empty-urls": (
        with_spec(redis={"external": {"urls": []}}),
        "spec.redis.external.urls",
        "at least 1 items",
    ),
    "port-range": (
        with_spec(protocol={"port": 70000}),
        "spec.protocol.port",
        "less than or equal to 65535",
    ),
    "drain-too-long": (
        with_spec(protocol={"drainSeconds": 601}),
        "spec.protocol.drainSeconds",
        "less than or equal to 600",
    ),
    "drain-negative": (
        with_spec(protocol={"drainSeconds": -1}),
        "spec.protocol.drainSeconds",
        "greater than or equal to 0",
    ),
    "drain-fraction": (
        with_spec(protocol={"drainSeconds": 1.5}),
        "spec.protocol.drainSeconds",
        "integer",
    ),
    "service-type": (
        with_spec(protocol={"serviceType": "Ingress"}),
        "spec.protocol.serviceType",
        "Unsupported value",
    ),
    "zero-target": (
        with_spec(workers={"targetQueueDepth": 0}),
        "spec.workers.targetQueueDepth",
        "greater than or equal to 1",
    ),
    "zero-max": (
        with_spec(workers={"maxReplicas": 0, "minReplicas": 0}),
        "spec.workers.maxReplicas",
        "greater than or equal to 1",
    ),
    "bad-channel": (
        with_spec(workers={"channels": ["no spaces!"]}),
        "spec.workers.channels[0]",
        "should match",
    ),
    "grace-zero": (
        with_spec(workers={"terminationGracePeriodSeconds": 0}),
        "spec.workers.terminationGracePeriodSeconds",
        "greater than or equal to 1",
    ),
    "unknown-field": (with_spec(workers={"replicas": 3}), "spec.workers.replicas", "unknown field"),
    # An integer 0 slipped past `minimum: 0.1`; the CEL rule compares the number itself.
    "poll-int-zero": (
        with_spec(workers={"pollIntervalSeconds": 0}),
        "spec.workers.pollIntervalSeconds",
        "must be between 0.1 and 60",
    ),
    "poll-too-small": (
        with_spec(workers={"pollIntervalSeconds": 0.01}),
        "spec.workers.pollIntervalSeconds",
        "0.1",
    ),
    "env-int-value": (
        with_spec(env=[{"name": "LIMIT", "value": 500}]),
        "spec.env[0].value",
        "must be of type string",
    ),
    "env-bad-name": (
        with_spec(env=[{"name": "BAD NAME=", "value": "x"}]),
        "spec.env[0].name",
        "should match",
    ),
    "env-duplicate": (
        with_spec(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
        "Duplicate value",
    ),
    "bad-cpu": (
        with_spec(protocol={"resources": {"limits": {"cpu": "lots"}}}),
        "spec.protocol.resources.limits.cpu",
        "should match",
    ),
    "bad-memory-request": (
        with_spec(workers={"resources": {"requests": {"memory": "1 GB"}}}),
        "spec.workers.resources.requests.memory",
        "should match",
    ),
    "duplicate-urls": (
        with_spec(redis={"external": {"urls": ["redis://r:6379/0", "redis://r:6379/0"]}}),
        "spec.redis.external.urls[1]",
        "Duplicate value",
    ),
    "name-not-dns-1035": (named("1chat"), "metadata.name", "DNS-1035"),
    "name-too-long": (named("a" * 60), "metadata.name", "at most 46 characters"),
    # App x's Redis Service is x-redis: an app of that name would take it over.
    "name-ends-in-redis": (named("x-redis"), "metadata.name", "must not end in -redis"),
    # What the children's validation would refuse later, refused up front naming the field.
    "limits-below-requests": (
        with_spec(protocol={"resources": {"limits": {"cpu": "100m"}, "requests": {"cpu": "0.5"}}}),
        "spec.protocol.resources.limits",
        "limits.cpu 100m is below requests.cpu 0.5",
    ),
    "negative-quantity": (
        with_spec(workers={"resources": {"requests": {"memory": "-1Gi"}}}),
        "spec.workers.resources.requests[memory]",
        "must not be negative",
    ),
    "unknown-resource": (
        with_spec(redis={"managed": {"resources": {"limits": {"gpu": 1}}}}),
        "spec.redis.managed.resources.limits",
        "unknown resource name",
    ),
    "hugepages-request-without-limit": (
        with_spec(
            protocol={
                "resources": {
                    "requests": {"hugepages-2Mi": "2Mi", "memory": "64Mi"},
                    "limits": {"memory": "64Mi"},
                }
            }
        ),
        "spec.protocol.resources.requests",
        "a hugepages request must have a limit",
    ),
    "resource-claims": (
        with_spec(protocol={"resources": {"claims": [{"name": "gpu"}]}}),
        "spec.protocol.resources.claims",
        "claims are not supported",
    ),
    "value-from-junk": (
        with_spec(env=[{"name": "A", "valueFrom": {"junk": {"x": 1}}}]),
        "spec.env[0].valueFrom.junk",
        "unknown field",
    ),
    "value-from-namespace": (
        with_spec(
            env=[
                {
                    "name": "A",
                    "valueFrom": {
                        "secretKeyRef": {"name": "s", "key": "k", "namespace": "kube-system"}
                    },
                }
            ]
        ),
        "spec.env[0].valueFrom.secretKeyRef.namespace",
        "unknown field",
    ),
    "value-from-two-sources": (
        with_spec(
            env=[
                {
                    "name": "A",
                    "valueFrom": {
                        "secretKeyRef": {"name": "s", "key": "k"},
                        "configMapKeyRef": {"name": "c", "key": "k"},
                    },
                }
            ]
        ),
        "spec.env[0].valueFrom",
        "exactly one of secretKeyRef, configMapKeyRef, fieldRef and resourceFieldRef",
    ),
    "value-from-empty": (
        with_spec(env=[{"name": "A", "valueFrom": {}}]),
        "spec.env[0].valueFrom",
        "exactly one of secretKeyRef",
    ),
    "value-from-bad-field-path": (
        with_spec(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}]),
        "spec.env[0].valueFrom.fieldRef.fieldPath",
        "should match",
    ),
    "value-from-bad-secret-name": (
        with_spec(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "../x", "key": "k"}}}]),
        "spec.env[0].valueFrom.secretKeyRef.name",
        "should match",
    ),
    **{
        f"env-set-by-operator-{name}": (
            with_spec(env=[{"name": "OK", "value": "1"}, {"name": name, "value": "x"}]),
            "spec.env[1].name",
            f"{name} is set by the operator itself",
        )
        for name in OPERATOR_ENV
    },
    "origin-with-comma": (
        with_spec(protocol={"allowedOrigins": ["https://a.example,*"]}),
        "spec.protocol.allowedOrigins[0]",
        "no commas",
    ),
    "origin-junk": (
        with_spec(protocol={"allowedOrigins": ["https://ok.example", "not an origin"]}),
        "spec.protocol.allowedOrigins[1]",
        'got "not an origin"',
    ),
    "origin-with-path": (
        with_spec(protocol={"allowedOrigins": ["https://a.example/app"]}),
        "spec.protocol.allowedOrigins[0]",
        "no commas, spaces, paths or wildcards",
    ),
    **{
        f"url-password-{i}": (
            with_spec(redis={"external": {"urls": ["redis://r:6379/0", url]}}),
            "spec.redis.external.urls[1]",
            "name it in redis.external.passwordSecretRef",
        )
        for i, url in enumerate(
            [
                "redis://:pw@r2:6379/0",
                "rediss://user:pw@r2:6379/0",
                "redis://r2:6379/0?password=pw",
                "redis://r2:6379/0?db=0&Password=pw",
                # A user name holding '@': the password is after the last ':' before the last '@'.
                "redis://a@b:pw@h.example:6379/0",
                "redis://a@b@c:pw@h.example:6379/0",
                # Percent-encoded parameter names are decoded by the client (password).
                "redis://r2:6379/0?pass%77ord=pw",
                "redis://r2:6379/0?db=0&%70assword=pw",
                # A shard found through Sentinel: the master's and the sentinels' passwords.
                "redis+sentinel://:pw@s1:26379,s2:26379/shard-0",
                "redis+sentinel://s1:26379,s2:26379/shard-0?sentinel_password=pw",
            ]
        )
    },
    "bad-service-account-name": (
        with_spec(serviceAccountName="Not_A_Name"),
        "spec.serviceAccountName",
        "should match",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_manifest_is_refused_naming_the_field(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str, case: str
) -> None:
    obj, field, message = INVALID[case]
    proc = kube_cluster.kubectl(
        "apply", "-n", namespace, "--validate=strict", "-f", "-",
        input=json.dumps(obj), check=False,
    )  # fmt: skip
    assert proc.returncode != 0, f"{case} was accepted"
    assert field in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert kube_cluster.kubectl("get", "channelapps", "-n", namespace, "-o", "name").stdout == ""


def test_values_children_accept_are_accepted(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    obj = with_spec(
        env=[
            {"name": "CHANNELAPP_CHANNEL_CAPACITY", "value": "500"},
            {"name": "my.setting-1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {
                "name": "FROM_CONFIG",
                "valueFrom": {"configMapKeyRef": {"name": "c.d", "key": "a_b", "optional": True}},
            },
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "TIER",
                "valueFrom": {
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['tier']"}
                },
            },
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
        ],
        serviceAccountName="app-runner",
        protocol={
            "resources": {
                "limits": {"cpu": 2, "memory": "256Mi", "hugepages-2Mi": "4Mi"},
                "requests": {"cpu": "100m", "memory": "256Mi", "hugepages-2Mi": "4Mi"},
            },
            "allowedOrigins": [
                "*",
                "https://chat.example.com",
                "http://localhost:8000",
                "https://[::1]:8443",
                "chat.example.com:443",
                ".example.com",
                "https://.example.com",
            ],
        },
        workers={
            "pollIntervalSeconds": 0.1,
            "resources": {
                "limits": {"cpu": "1.5", "ephemeral-storage": "1Gi"},
                "requests": {"cpu": 1},
            },
        },
        redis={
            "external": {
                "urls": [
                    "redis://a:6379/0",
                    "rediss://app@b:6379/0?ssl_cert_reqs=none",
                    "redis://c.example:6379/0?client_name=a%20b",
                    "redis://us@er@d.example:6379/0",
                    "redis+sentinel://s1:26379,s2.example:26379/shard-4/0?failover_timeout=5",
                ],
                "passwordSecretRef": {"name": "redis-auth"},
            }
        },
    )
    obj["metadata"]["name"] = "a" + "b" * 45
    kube_cluster.kubectl(
        "apply", "-n", namespace, "--validate=strict", "-f", "-", input=json.dumps(obj)
    )  # fmt: skip


def test_a_django_settings_module_is_accepted_as_the_app(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    obj = with_spec(app="django:mysite.settings")
    obj["metadata"]["name"] = "django"
    kube_cluster.kubectl(
        "apply", "-n", namespace, "--validate=strict", "-f", "-", input=json.dumps(obj)
    )  # fmt: skip
    spec = kube_cluster.kubectl_json("get", "channelapp", "django", "-n", namespace)["spec"]
    assert spec["app"] == "django:mysite.settings"


def test_schema_fills_defaults(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    obj = copy.deepcopy(BASE)
    obj["metadata"]["name"] = "defaults"
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    spec = kube_cluster.kubectl_json("get", "channelapp", "defaults", "-n", namespace)["spec"]
    assert spec["protocol"] == {
        "replicas": 1,
        "port": 8000,
        "serviceType": "ClusterIP",
        "drainSeconds": 30,
    }
    w = spec["workers"]
    assert (w["minReplicas"], w["maxReplicas"], w["targetQueueDepth"]) == (1, 10, 10)
    assert (w["scaleDownStabilizationSeconds"], w["pollIntervalSeconds"]) == (30, 1)
    assert (w["concurrency"], w["terminationGracePeriodSeconds"], w["channels"]) == (64, 30, [])
    assert (w["targetUtilization"], w["targetQueueWaitSeconds"]) == (0.9, 0.5)
    assert spec["redis"] == {
        "managed": {"shards": 1, "image": "redis:7.4-alpine", "replicas": 1, "sentinels": 3}
    }
    assert spec["imagePullPolicy"] == "IfNotPresent"


def test_short_name_and_printer_columns(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    obj = copy.deepcopy(BASE)
    obj["metadata"]["name"] = "columns"
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    out = kube_cluster.kubectl("get", "chapp", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "WORKERS", "QUEUE", "SHARDS", "AGE"]
    assert out[1].split()[0] == "columns"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_apply_cleanly(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str, example: str
) -> None:
    docs = load_example(example)
    assert any(d["kind"] == "ChannelApp" for d in docs)
    kube_cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=yaml.safe_dump_all(docs),
    )  # fmt: skip


def test_every_field_is_described() -> None:
    crd = yaml.safe_load(CRD.read_text())
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        # metadata is the API server's own schema; a CRD may not describe it.
        if not node.get("description") and path != ".metadata":
            missing.append(path or "<root>")
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")
    assert not missing, missing


def test_kubectl_explain_describes_fields(kube_cluster: KubeCluster, channelapp_crd: str) -> None:
    for field, words in (
        ("channelapp.spec.redis.external.passwordSecretRef.key", "Key in the Secret"),
        ("channelapp.spec.protocol.replicas", "kubectl scale chapp"),
        ("channelapp.status.queue", "unknown"),
        ("channelapp.spec.app", "django:mysite.settings"),
    ):
        out = kube_cluster.kubectl("explain", field).stdout
        assert words in out, out


def test_child_names_that_cannot_collide_are_accepted(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    # Only the -redis suffix makes one app's child another's (tests/operator/test_tenant_admission.py).
    for name in ("x", "x-protocol", "x-worker", "x-secrets", "redis", "x-redis-0", "x-rediss"):
        kube_cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(named(name)))


def test_every_env_name_the_operator_sets_is_refused_in_spec_env() -> None:
    """The CRD's list of reserved env names is what builders.py gives the app containers."""
    from channelapp_operator import builders

    spec = {
        "image": "example/app:1",
        "app": "chat.app:app",
        "protocol": {"allowedOrigins": ["*"]},
        "redis": {"external": {"urls": ["redis://r:6379/0"], "passwordSecretRef": {"name": "p"}}},
    }
    set_by_operator = set()
    for build in (builders.protocol_deployment, builders.worker_deployment):
        manifest = build("chat", "ns", "uid", spec)
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            set_by_operator |= {e["name"] for e in container["env"]}
    assert set_by_operator == set(OPERATOR_ENV)
    crd = yaml.safe_load(CRD.read_text())
    env_item = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["env"]["items"]
    (rule,) = [
        r["rule"] for r in env_item["x-kubernetes-validations"] if "self.name in" in r["rule"]
    ]
    assert all(f"'{name}'" in rule for name in OPERATOR_ENV), rule


def create(cluster: KubeCluster, namespace: str, obj: dict[str, Any]) -> Any:
    # create, not apply: kubectl apply would also copy a large spec into its own annotation.
    return cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


def test_env_too_large_for_the_operator_to_record_is_refused(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    """kopf records the spec it handled in an annotation, and an object's annotations share
    256 KiB with kubectl's: a character may cost six bytes of JSON in each, so the strings of
    a spec total at most 16384 characters, counted as characters whatever their bytes."""
    env = [{"name": f"BIG_{i}", "value": "x" * 10_000} for i in range(2)]
    proc = create(kube_cluster, namespace, with_spec(env=env))
    assert proc.returncode != 0
    assert "spec: Invalid value" in proc.stderr, proc.stderr
    assert "the spec is too large" in proc.stderr, proc.stderr
    # Two values of 10000 two-byte characters each: over the cap as characters.
    env = [{"name": f"BIG_{i}", "value": "\u00e9" * 10_000} for i in range(2)]
    proc = create(kube_cluster, namespace, with_spec(env=env))
    assert proc.returncode != 0 and "the spec is too large" in proc.stderr, proc.stderr
    # One value over 16384 characters is refused on its own.
    proc = create(kube_cluster, namespace, with_spec(env=[{"name": "V", "value": "x" * 16385}]))
    assert proc.returncode != 0, proc.stderr
    assert "spec.env[0].value: Too long" in proc.stderr, proc.stderr
    # The names valueFrom reads count too.
    ref = {"name": "s" * 253, "key": "k" * 253}
    env = [{"name": f"R{i}", "valueFrom": {"secretKeyRef": ref}} for i in range(40)]
    proc = create(kube_cluster, namespace, with_spec(env=env))
    assert proc.returncode != 0 and "the spec is too large" in proc.stderr, proc.stderr
    # Exactly at the cap: accepted.
    env = [{"name": f"V{i}", "value": "\u00e9" * 2046} for i in range(8)]
    obj = with_spec(env=env)
    obj["metadata"]["name"] = "at-cap"
    proc = create(kube_cluster, namespace, obj)
    assert proc.returncode == 0, proc.stderr


def test_spec_too_large_for_the_operator_to_record_is_refused(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    env = [{"name": f"BIG_{i}", "value": "x" * 1_000} for i in range(6)]
    urls = [f"redis://r{i}.example.internal:6379/0?client_name={'c' * 150}" for i in range(64)]
    obj = with_spec(env=env, redis={"external": {"urls": urls}})
    proc = create(kube_cluster, namespace, obj)
    assert proc.returncode != 0
    assert "spec: Invalid value" in proc.stderr, proc.stderr
    assert "the spec is too large" in proc.stderr, proc.stderr
