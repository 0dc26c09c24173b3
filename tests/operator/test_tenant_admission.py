"""A ChannelApp's author may have the operator do only what the author may do: the chart's
ValidatingAdmissionPolicy, checked as a user with ChannelApp rights alone and as one with
the built-in ``edit`` role, on the test control plane."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from channelapp_operator import names

from devtools.kube import KubeCluster
from devtools.operator import ROOT
from devtools.polling import wait_for

CHART = ROOT / "charts" / "channelapp-operator"
RELEASE = "tenancy"
POLICY = f"{RELEASE}-channelapp-operator"
MAX_ENV_REFS = 16  # the chart's admissionPolicy.maxEnvRefs

BASE: dict[str, Any] = {
    "apiVersion": "channelapp.dev/v1alpha1",
    "kind": "ChannelApp",
    "metadata": {"name": "app"},
    "spec": {"image": "example/app:1", "app": "chat.app:app"},
}


def app(name: str = "app", **spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["metadata"]["name"] = name
    obj["spec"].update(spec)
    return obj


def secret_env(*secrets: str) -> list[dict[str, Any]]:
    return [
        {"name": f"FROM_{i}", "valueFrom": {"secretKeyRef": {"name": s, "key": "k"}}}
        for i, s in enumerate(secrets)
    ]


def config_map_env(*config_maps: str) -> list[dict[str, Any]]:
    return [
        {"name": f"CM_{i}", "valueFrom": {"configMapKeyRef": {"name": c, "key": "k"}}}
        for i, c in enumerate(config_maps)
    ]


def external(secret: str) -> dict[str, Any]:
    return {
        "external": {
            "urls": ["redis://redis.example.internal:6379/0"],
            "passwordSecretRef": {"name": secret, "key": "password"},
        }
    }


def create(
    cluster: KubeCluster, ns: str, obj: dict[str, Any], user: str | None = None
) -> tuple[bool, str]:
    """Create ``obj`` as ``user`` (the admin when None): (accepted, the API server's reply)."""
    as_user = [f"--as={user}"] if user else []
    proc = cluster.kubectl(
        "create", "-n", ns, "-f", "-", *as_user, input=json.dumps(obj), check=False
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


def rendered_policy(cluster: KubeCluster) -> str:
    """The chart's admission policy, binding and aggregated roles, as `helm template` renders them."""
    return cluster.helm(
        "template", RELEASE, str(CHART), "--namespace", "channelapp-system",
        "--show-only", "templates/admission-policy.yaml",
        "--show-only", "templates/aggregated-roles.yaml",
    ).stdout  # fmt: skip


@pytest.fixture(scope="module")
def tenancy_policy(kube_cluster: KubeCluster, channelapp_crd: str) -> Iterator[str]:
    """The chart's policy installed and enforced (known-bad objects refused), removed afterwards."""
    manifests = rendered_policy(kube_cluster)
    kinds = {d["kind"] for d in yaml.safe_load_all(manifests) if d}
    assert kinds == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ClusterRole",
    }, kinds
    # A namespace whose name leaves a 46-character app name no room in the key prefix.
    probe_ns = f"t-{uuid.uuid4().hex[:10]}-" + "p" * 47
    kube_cluster.kubectl("create", "namespace", probe_ns)
    try:
        kube_cluster.kubectl("apply", "-f", "-", input=manifests)
        probe = app("a" * 46)

        def enforced() -> bool:
            proc = kube_cluster.kubectl(
                "create", "--dry-run=server", "-n", probe_ns, "-f", "-",
                input=json.dumps(probe), check=False,
            )  # fmt: skip
            return proc.returncode != 0 and f"ValidatingAdmissionPolicy '{POLICY}'" in proc.stderr

        # The API server picks a new policy and binding up from its informers.
        wait_for(enforced, 60, what="the admission policy refusing a known-bad ChannelApp")
        yield POLICY
    finally:
        kube_cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifests)
        kube_cluster.kubectl("delete", "namespace", probe_ns, "--wait=false", check=False)


def service_account_with(cluster: KubeCluster, ns: str, sa: str, role_kind: str, role: str) -> str:
    cluster.kubectl("create", "serviceaccount", sa, "-n", ns)
    cluster.kubectl(
        "create", "rolebinding", sa, "-n", ns, f"--{role_kind.lower()}={role}",
        f"--serviceaccount={ns}:{sa}",
    )  # fmt: skip
    return f"system:serviceaccount:{ns}:{sa}"


@pytest.fixture
def tenant(kube_cluster: KubeCluster, namespace: str, tenancy_policy: str) -> dict[str, str]:
    """A namespace with a Secret and a ServiceAccount the restricted author may not use, an author
    with ChannelApp rights alone, and one with the built-in edit role."""
    ns = namespace
    kube_cluster.kubectl(
        "create", "secret", "generic", "db", "-n", ns, "--from-literal=password=s3cret"
    )
    kube_cluster.kubectl("create", "serviceaccount", "runner", "-n", ns)
    kube_cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=k=v")
    kube_cluster.kubectl(
        "create", "role", "channelapps-only", "-n", ns,
        "--verb=create,get,list,update,patch,delete", "--resource=channelapps.channelapp.dev",
    )  # fmt: skip
    restricted = service_account_with(kube_cluster, ns, "author", "Role", "channelapps-only")
    editor = service_account_with(kube_cluster, ns, "editor", "ClusterRole", "edit")

    def can(user: str, verb: str, resource: str) -> bool:
        out = kube_cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", ns, f"--as={user}", check=False
        ).stdout.strip()
        return out == "yes"

    assert not can(restricted, "get", "secrets") and not can(restricted, "create", "services")
    assert not can(restricted, "get", "configmaps")
    assert can(restricted, "create", "channelapps.channelapp.dev")
    # edit gains ChannelApps through the chart's channelapp-edit (aggregated by the
    # controller manager, which takes a moment).
    wait_for(
        lambda: can(editor, "create", "channelapps.channelapp.dev"),
        60,
        what="channelapp-edit aggregated into edit",
    )
    assert can(editor, "get", "secrets") and can(editor, "create", "services")
    assert can(editor, "get", "configmaps")
    return {"ns": ns, "restricted": restricted, "editor": editor}


# Manifests that make the operator act beyond its author's rights: (the manifest, the field
# the refusal names, the words naming the missing right).
HOSTILE = {
    "password-secret": (
        app(redis=external("db")),
        "spec.redis.external.passwordSecretRef.name",
        "may not get Secret db",
    ),
    "env-secret": (
        app(env=[{"name": "PLAIN", "value": "x"}, *secret_env("db")]),
        "spec.env[1].valueFrom.secretKeyRef.name",
        "may not get Secret db",
    ),
    "env-secret-named-twice": (
        # The same Secret named twice is checked once; the refusal names its first use.
        app(env=[{"name": "PLAIN", "value": "x"}, *secret_env("db", "db")]),
        "spec.env[1].valueFrom.secretKeyRef.name",
        "may not get Secret db",
    ),
    "env-configmap": (
        app(env=[{"name": "PLAIN", "value": "x"}, *config_map_env("cfg")]),
        "spec.env[1].valueFrom.configMapKeyRef.name",
        "may not get ConfigMap cfg",
    ),
    "env-configmap-after-a-secret-of-that-name": (
        # A Secret and a ConfigMap of the same name are two objects, each checked.
        app(env=[*secret_env("cfg"), *config_map_env("cfg")]),
        "spec.env[0].valueFrom.secretKeyRef.name",
        "may not get Secret cfg",
    ),
    "node-port": (
        app(protocol={"serviceType": "NodePort"}),
        "spec.protocol.serviceType",
        "may not create Services",
    ),
    "load-balancer": (
        app(protocol={"serviceType": "LoadBalancer"}),
        "spec.protocol.serviceType",
        "may not create Services",
    ),
    "service-account": (
        app(serviceAccountName="runner"),
        "spec.serviceAccountName",
        "may not create tokens of ServiceAccount runner (serviceaccounts/token)",
    ),
}


@pytest.mark.cluster
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_restricted_author_is_refused_what_the_operator_would_do_for_them(
    kube_cluster: KubeCluster, tenant: dict[str, str], case: str
) -> None:
    obj, field, right = HOSTILE[case]
    ok, reply = create(kube_cluster, tenant["ns"], obj, tenant["restricted"])
    assert not ok, f"{case} was accepted"
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in reply, reply
    assert f"{field}: {tenant['restricted']} {right}" in reply, reply
    assert kube_cluster.kubectl("get", "channelapps", "-n", tenant["ns"], "-o", "name").stdout == ""


@pytest.mark.cluster
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_edit_author_may_name_what_they_may_use(
    kube_cluster: KubeCluster, tenant: dict[str, str], case: str
) -> None:
    obj, _, _ = HOSTILE[case]
    ok, reply = create(kube_cluster, tenant["ns"], obj, tenant["editor"])
    assert ok, reply
    kube_cluster.kubectl("get", "channelapp", obj["metadata"]["name"], "-n", tenant["ns"])


@pytest.mark.cluster
def test_restricted_author_may_create_an_app_that_delegates_nothing(
    kube_cluster: KubeCluster, tenant: dict[str, str]
) -> None:
    obj = app(
        env=[
            {"name": "PLAIN", "value": "x"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        protocol={"serviceType": "ClusterIP"},
        redis={"external": {"urls": ["redis://redis.example.internal:6379/0"]}},
    )
    ok, reply = create(kube_cluster, tenant["ns"], obj, tenant["restricted"])
    assert ok, reply


@pytest.mark.cluster
def test_a_spec_change_is_checked_and_a_metadata_change_is_not(
    kube_cluster: KubeCluster, tenant: dict[str, str]
) -> None:
    """Rights are checked whenever a spec is written, also on update; writes that leave the
    spec alone (the operator's annotations on an app) are not the author delegating anything."""
    ns, restricted = tenant["ns"], tenant["restricted"]
    ok, reply = create(kube_cluster, ns, app("mine"), restricted)
    assert ok, reply
    proc = kube_cluster.patch_channelapp(
        ns, "mine", {"spec": {"redis": {"managed": None, **external("db")}}},
        as_user=restricted, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "spec.redis.external.passwordSecretRef.name" in proc.stderr, proc.stderr
    spec = kube_cluster.kubectl_json("get", "channelapp", "mine", "-n", ns)["spec"]
    assert "external" not in spec["redis"]

    # An app the admin made with the Secret: the restricted author (like the operator, which
    # may get that Secret but not create tokens) may annotate it without the spec re-checked.
    ok, reply = create(kube_cluster, ns, app("admins", redis=external("db")))
    assert ok, reply
    kube_cluster.kubectl(
        "annotate", "channelapp", "admins", "-n", ns, f"--as={restricted}", "note=hello"
    )
    proc = kube_cluster.patch_channelapp(
        ns, "admins", {"spec": {"protocol": {"replicas": 2}}}, as_user=restricted, check=False
    )
    assert proc.returncode != 0 and "may not get Secret db" in proc.stderr, proc.stderr


def delete_app(
    cluster: KubeCluster, ns: str, name: str, user: str, *flags: str
) -> tuple[bool, str]:
    proc = cluster.kubectl(
        "delete", "channelapp", name, "-n", ns, f"--as={user}", "--wait=false", *flags, check=False
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


def delete_raw(cluster: KubeCluster, ns: str, name: str, user: str, options: dict[str, Any]) -> str:
    """DELETE with a body of DeleteOptions; the API server's reply."""
    path = f"/apis/channelapp.dev/v1alpha1/namespaces/{ns}/channelapps/{name}"
    body = {"apiVersion": "v1", "kind": "DeleteOptions", **options}
    proc = cluster.kubectl(
        "delete", "--raw", path, "-f", "-", f"--as={user}", input=json.dumps(body), check=False
    )
    return proc.stdout + proc.stderr


@pytest.mark.cluster
def test_only_an_author_who_may_delete_the_children_may_orphan_them(
    kube_cluster: KubeCluster, tenant: dict[str, str]
) -> None:
    ns, restricted, editor = tenant["ns"], tenant["restricted"], tenant["editor"]
    orphan_policy = f"ValidatingAdmissionPolicy '{POLICY}-orphan'"
    ok, reply = create(kube_cluster, ns, app("kept"), restricted)
    assert ok, reply

    def refused() -> str | None:
        ok, reply = delete_app(
            kube_cluster, ns, "kept", restricted, "--cascade=orphan", "--dry-run=server"
        )
        return reply if not ok and orphan_policy in reply else None

    reply = wait_for(refused, 60, what="the orphan policy refusing an orphaning delete")
    assert (
        f"orphaning the app's children (propagationPolicy Orphan, the orphan finalizer): {restricted} may not delete Deployments"
        in reply
    ), reply
    ok, reply = delete_app(kube_cluster, ns, "kept", restricted, "--cascade=orphan")
    assert not ok and orphan_policy in reply, reply
    reply = delete_raw(kube_cluster, ns, "kept", restricted, {"orphanDependents": True})
    assert orphan_policy in reply, reply
    reply = delete_raw(kube_cluster, ns, "kept", restricted, {"propagationPolicy": "Orphan"})
    assert orphan_policy in reply, reply
    kube_cluster.kubectl("get", "channelapp", "kept", "-n", ns)
    # The "orphan" finalizer orphans the children on any delete: adding it is the same.
    finalizer = {"metadata": {"finalizers": ["orphan"]}}
    proc = kube_cluster.patch_channelapp(ns, "kept", finalizer, as_user=restricted, check=False)
    assert proc.returncode != 0 and orphan_policy in proc.stderr, proc.stderr
    obj = app("born-orphaning")
    obj["metadata"]["finalizers"] = ["orphan"]
    ok, reply = create(kube_cluster, ns, obj, restricted)
    assert not ok and orphan_policy in reply, reply
    # A delete that lets the garbage collector remove the children is the author's to make.
    ok, reply = delete_app(kube_cluster, ns, "kept", restricted, "--cascade=background")
    assert ok, reply

    # edit may delete Deployments, StatefulSets, Services and Secrets: it may orphan them.
    ok, reply = create(kube_cluster, ns, app("edits"), editor)
    assert ok, reply
    kube_cluster.patch_channelapp(ns, "edits", finalizer, as_user=editor)
    ok, reply = delete_app(kube_cluster, ns, "edits", editor, "--cascade=orphan")
    assert ok, reply


@pytest.mark.cluster
def test_env_may_name_up_to_the_cap_of_distinct_secrets_within_the_cel_budget(
    kube_cluster: KubeCluster, tenant: dict[str, str]
) -> None:
    """Every right checked at once (each distinct Secret and ConfigMap, the password Secret,
    the Service type, the ServiceAccount) stays inside a binding's CEL cost budget; one object
    more than the cap, Secret or ConfigMap, is refused naming spec.env."""
    ns, editor = tenant["ns"], tenant["editor"]
    half = MAX_ENV_REFS // 2
    secrets = [f"s{i}" for i in range(half)]
    config_maps = [f"c{i}" for i in range(MAX_ENV_REFS - half)]
    for s in secrets:
        kube_cluster.kubectl("create", "secret", "generic", s, "-n", ns, "--from-literal=k=v")
    for c in config_maps:
        kube_cluster.kubectl("create", "configmap", c, "-n", ns, "--from-literal=k=v")
    many = [*secret_env(*secrets, *secrets), *config_map_env(*config_maps, *config_maps)]
    for i, e in enumerate(many):  # each object twice: checked once
        e["name"] = f"E{i}"
    obj = app(
        "full", env=many, redis=external("db"),
        protocol={"serviceType": "LoadBalancer"}, serviceAccountName="runner",
    )  # fmt: skip
    ok, reply = create(kube_cluster, ns, obj, editor)
    assert ok, reply

    over = [*secret_env(*secrets), *config_map_env(*config_maps, "one-more")]
    for i, e in enumerate(over):
        e["name"] = f"E{i}"
    ok, reply = create(kube_cluster, ns, app("over", env=over), editor)
    assert not ok
    assert (
        "spec.env: valueFrom.secretKeyRef and valueFrom.configMapKeyRef may name at most "
        f"{MAX_ENV_REFS} different Secrets and ConfigMaps together"
    ) in reply, reply


@pytest.mark.cluster
def test_namespace_and_name_too_long_for_the_key_prefix_are_refused_naming_metadata_name(
    kube_cluster: KubeCluster, tenancy_policy: str
) -> None:
    """The pods' key prefix channelapp.NAMESPACE.NAME has at most 100 characters
    (app/channelapp/layer/keyspace.py): with a 60-character namespace a name may have 28."""
    ns = f"t-{uuid.uuid4().hex[:10]}-" + "n" * 47
    assert len(ns) == 60
    kube_cluster.kubectl("create", "namespace", ns)
    try:
        ok, reply = create(kube_cluster, ns, app("a" * 29))
        assert not ok
        assert "metadata.name: in namespace" in reply, reply
        assert "may have at most 28 characters, got 29" in reply, reply
        ok, reply = create(kube_cluster, ns, app("a" * 28))
        assert ok, reply
    finally:
        kube_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.cluster
def test_aggregated_roles_give_view_edit_and_admin_their_channelapp_rights(
    kube_cluster: KubeCluster, namespace: str, tenancy_policy: str
) -> None:
    users = {
        role: service_account_with(kube_cluster, namespace, role, "ClusterRole", role)
        for role in ("view", "edit", "admin")
    }

    def can(role: str, verb: str, subresource: str = "") -> bool:
        proc = kube_cluster.kubectl(
            "auth", "can-i", verb, "channelapps.channelapp.dev", f"--subresource={subresource}",
            "-n", namespace, f"--as={users[role]}", check=False,
        )  # fmt: skip
        return proc.stdout.strip() == "yes"

    wait_for(lambda: all(can(r, "list") for r in users), 60, what="view/edit/admin list apps")
    wait_for(lambda: can("edit", "create") and can("admin", "delete"), 60, what="edit/admin")
    assert not can("view", "create") and not can("view", "delete")
    assert can("edit", "patch", "scale") and can("view", "get", "scale")
    assert not can("view", "patch", "scale")
    # The operator alone writes status.
    assert can("view", "get", "status") and not can("admin", "patch", "status")


def test_child_names_of_two_apps_collide_only_through_the_redis_suffix() -> None:
    """Children of app NAME (operator/channelapp_operator/names.py): Services NAME and
    NAME-redis (headless, for the Redis StatefulSet), Deployments NAME-protocol and
    NAME-worker, StatefulSet NAME-redis, Secret NAME-secrets, PodDisruptionBudgets named as
    the workloads they cover. Two objects collide only with
    the same kind and name. Deployments end in -protocol or -worker, never both, so
    X-protocol = Y-protocol only when X = Y (and likewise the others); the one kind with two
    differently shaped names is Service: NAME and NAME-redis, so app x-redis's Service is
    app x's Redis Service. The CRD refuses names ending in -redis; no other pair collides."""

    def children(app_name: str) -> set[tuple[str, str]]:
        return {
            ("Service", names.service_name(app_name)),
            ("Service", names.redis_name(app_name)),
            ("Deployment", names.protocol_name(app_name)),
            ("Deployment", names.worker_name(app_name)),
            ("StatefulSet", names.redis_name(app_name)),
            ("Secret", names.secret_name(app_name)),
            ("PodDisruptionBudget", names.protocol_name(app_name)),
            ("PodDisruptionBudget", names.worker_name(app_name)),
            ("PodDisruptionBudget", names.redis_name(app_name)),
        }

    suffixes = ["", "-redis", "-protocol", "-worker", "-secrets"]
    candidates = {f"x{a}{b}" for a in suffixes for b in suffixes} | {"redis", "x-redis-0"}
    collisions = {
        (a, b) for a in candidates for b in candidates if a < b and children(a) & children(b)
    }
    assert ("x", "x-redis") in collisions  # what the CRD's -redis rule is for
    assert all(a.endswith("-redis") or b.endswith("-redis") for a, b in collisions), collisions
