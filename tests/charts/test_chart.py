"""The Helm chart: lint, templates, schema refusals, install into the real control plane, RBAC."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.controlplane import bin_dir, ensure_tools
from devtools.kube import KubeCluster
from devtools.operator import CRD, OperatorProcess, load_example
from devtools.polling import wait_for

# The timestamp that begins a log record ("2026-12-07 06:42:27,403 ").
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ ")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "channelapp-operator"
CRDS = ["channelapps.channelapp.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"]


@pytest.fixture(scope="module")
def helm() -> str:
    ensure_tools()
    return str(bin_dir() / "helm")


def template(helm: str, *args: str, check: bool = True) -> Any:
    import subprocess

    proc = subprocess.run(
        [helm, "template", "rel", str(CHART), "--namespace", "ops", *args],
        capture_output=True,
        text=True,
    )
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


AGGREGATED_ROLES = {"channelapp-view", "channelapp-edit", "channelapp-admin"}


def operator_cluster_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's own ClusterRoles (not the ones for people, aggregated into view/edit/admin)."""
    return [
        d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"] not in AGGREGATED_ROLES
    ]


def test_helm_lint_strict(helm: str) -> None:
    import subprocess

    for values in ([], ["--set", "rbac.scope=namespace", "--set", "metrics.service.enabled=true"]):
        proc = subprocess.run(
            [helm, "lint", "--strict", str(CHART), *values], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_template_is_cluster_wide_hardened_and_recreated(helm: str) -> None:
    docs = template(helm)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("CustomResourceDefinition") == 1
    with_crds = template(helm, "--include-crds")
    assert sorted(
        d["metadata"]["name"] for d in by_kind(with_crds, "CustomResourceDefinition")
    ) == sorted(CRDS)
    assert {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ClusterKopfPeering",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= set(kinds)
    assert "Role" not in kinds and "Service" not in kinds
    (dep,) = by_kind(docs, "Deployment")
    # Two replicas, one active (random peering priorities), rolled without a gap.
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/channelapp/channelapp-operator:0.1.0"
    assert "--all-namespaces" in c["args"] and "--peering=channelapp-operator" in c["args"]
    assert "--peering-lifetime=10" in c["args"] and not any("--priority" in a for a in c["args"])
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Pod Security "restricted" also asks for the runtime's seccomp profile.
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for crd in by_kind(docs, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# The exact verbs, each from a call the operator makes: kube.py's apply (patch, and
# create for a new child), get, create, delete and status patch; kopf's list/watch of
# apps and children, its annotation patches on apps, its Events and peering keep-alive.
OPERATOR_VERBS = {
    ("channelapp.dev", "channelapps"): {"get", "list", "watch", "patch"},
    ("channelapp.dev", "channelapps/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("apps", "statefulsets"): {"list", "watch", "create", "patch", "delete"},
    ("", "services"): {"list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"list", "create", "patch", "delete"},
    ("", "secrets"): {"get", "create"},
    ("", "events"): {"create", "list"},
    # spec.migrate's Job; a failed one's pods and their log.
    ("batch", "jobs"): {"get", "list", "create", "delete"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
}
DISCOVERY_VERBS = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"get", "list", "watch"},
}


def verbs_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_rbac_grants_exactly_the_verbs_the_operator_uses(helm: str) -> None:
    (cluster_role,) = operator_cluster_roles(template(helm))
    peering = {
        ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
        # namespaced releases' peerings, to leave their namespaces to them
        ("kopf.dev", "kopfpeerings"): {"list", "watch"},
    }
    assert verbs_of(cluster_role) == OPERATOR_VERBS | peering | DISCOVERY_VERBS
    docs = template(helm, "--set", "rbac.scope=namespace")
    (role,) = by_kind(docs, "Role")
    peering = {("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}
    assert verbs_of(role) == OPERATOR_VERBS | peering
    (discovery,) = operator_cluster_roles(docs)
    assert verbs_of(discovery) == DISCOVERY_VERBS


def test_namespace_scope_and_options(helm: str) -> None:
    docs = template(
        helm,
        "--set",
        "rbac.scope=namespace",
        "--set",
        "metrics.service.enabled=true",
        "--set",
        "image.tag=9.9.9",
        "--set",
        "crds.keep=false",
        "--set",
        "logLevel=debug",
    )
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert {r for rule in role["rules"] for r in rule["resources"]} >= {
        "channelapps",
        "deployments",
    }
    (cluster_role,) = operator_cluster_roles(docs)
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert by_kind(docs, "KopfPeering") and not by_kind(docs, "ClusterKopfPeering")
    (dep,) = by_kind(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ops" in args and "--log-level=debug" in args
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":9.9.9")
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["port"] == 8080
    for crd in by_kind(docs, "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    assert not by_kind(template(helm, "--set", "crds.install=false"), "CustomResourceDefinition")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "rbac.scope=bogus"], "/rbac/scope"),
        (["--set", "metrics.port=0"], "/metrics/port"),
        (["--set", "logLevel=loud"], "/logLevel"),
        (["--set", "replicas=0"], "/replicas"),
        (["--set", "peering.lifetime=1"], "/peering/lifetime"),
        (["--set", "replica=2"], "additional properties 'replica' not allowed"),
        (["--set", "peering.name=Not_Valid"], "/peering/name"),
        (["--set", "admissionPolicy.maxEnvRefs=21"], "/admissionPolicy/maxEnvRefs"),
        (["--set", "admissionPolicy.enabled=true"], "additional properties 'enabled' not allowed"),
        (["--set", "rbac.aggregateRoles=yes"], "/rbac/aggregateRoles"),
    ],
)
def test_bad_values_are_refused_by_the_schema(helm: str, args: list[str], message: str) -> None:
    proc = template(helm, *args, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_aggregated_roles_give_people_channelapp_rights_and_nothing_else(helm: str) -> None:
    roles = {
        d["metadata"]["name"]: d
        for d in by_kind(template(helm), "ClusterRole")
        if d["metadata"]["name"] in AGGREGATED_ROLES
    }
    assert set(roles) == AGGREGATED_ROLES
    for level in ("view", "edit", "admin"):
        labels = roles[f"channelapp-{level}"]["metadata"]["labels"]
        assert labels[f"rbac.authorization.k8s.io/aggregate-to-{level}"] == "true"
        assert not [k for k in labels if "aggregate-to" in k and not k.endswith(level)]
    view = {
        ("channelapp.dev", r): {"get", "list", "watch"}
        for r in ("channelapps", "channelapps/status", "channelapps/scale")
    }
    assert verbs_of(roles["channelapp-view"]) == view
    write = {"create", "update", "patch", "delete", "deletecollection"}
    edit = view | {
        ("channelapp.dev", "channelapps"): {"get", "list", "watch"} | write,
        ("channelapp.dev", "channelapps/scale"): {"get", "list", "watch", "update", "patch"},
    }
    # Status is the operator's to write, at every level.
    assert verbs_of(roles["channelapp-edit"]) == edit == verbs_of(roles["channelapp-admin"])
    without = by_kind(template(helm, "--set", "rbac.aggregateRoles=false"), "ClusterRole")
    assert [d["metadata"]["name"] for d in without] == ["rel-channelapp-operator"]


def test_admission_policy_checks_the_author_and_binds_where_the_operator_acts(helm: str) -> None:
    docs = template(helm)
    policy, orphan = by_kind(docs, "ValidatingAdmissionPolicy")
    binding, orphan_binding = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert policy["metadata"]["name"] == binding["spec"]["policyName"] == "rel-channelapp-operator"
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["channelapps"] and rule["operations"] == ["CREATE", "UPDATE"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]  # cluster scope: every namespace
    # Deleting with propagationPolicy Orphan: the author must be able to delete each child kind.
    assert orphan["metadata"]["name"] == orphan_binding["spec"]["policyName"]
    assert orphan["spec"]["failurePolicy"] == "Fail"
    (rule,) = orphan["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["channelapps"]
    assert rule["operations"] == ["CREATE", "UPDATE", "DELETE"]  # the orphan finalizer too
    assert "matchResources" not in orphan_binding["spec"]
    orphan_checks = [v["expression"] for v in orphan["spec"]["validations"]]
    assert all(c.count("authorizer.") == 1 and "check('delete')" in c for c in orphan_checks)
    assert {c.split("resource('")[1].split("'")[0] for c in orphan_checks} == {
        "deployments",
        "statefulsets",
        "services",
        "secrets",
        "poddisruptionbudgets",
    }
    checks = [v["expression"] for v in policy["spec"]["validations"]]
    messages = " ".join(v["messageExpression"] for v in policy["spec"]["validations"])
    for field in (
        "metadata.name",
        "spec.redis.external.passwordSecretRef.name",
        "spec.protocol.serviceType",
        "spec.serviceAccountName",
    ):
        assert f"{field}: " in messages, field
    # Env references name their field and kind: a Secret's or a ConfigMap's.
    assert "(variables.refIsSecret[0] ? 'secretKeyRef' : 'configMapKeyRef') + '.name: '" in messages
    assert "(variables.refIsSecret[0] ? 'secrets' : 'configmaps')" in " ".join(checks)
    # One authorization check per validation (each costs 350000 of an expression's 1000000),
    # one for each of maxEnvRefs Secrets and ConfigMaps.
    assert all(c.count("authorizer.") <= 1 for c in checks)
    secret_checks = [c for c in checks if "refName[" in c]
    assert len(secret_checks) == 16
    docs = template(helm, "--set", "admissionPolicy.maxEnvRefs=3")
    policy, _ = by_kind(docs, "ValidatingAdmissionPolicy")
    assert len([v for v in policy["spec"]["validations"] if "refName[" in v["expression"]]) == 3

    # Namespace scope: the operator acts in the release namespace, so does the policy; named
    # per namespace, so that releases in several namespaces do not clash.
    docs = template(helm, "--set", "rbac.scope=namespace")
    policy, orphan = by_kind(docs, "ValidatingAdmissionPolicy")
    binding, orphan_binding = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert (
        policy["metadata"]["name"] == binding["spec"]["policyName"] == "rel-channelapp-operator.ops"
    )
    assert (
        orphan["metadata"]["name"]
        == orphan_binding["spec"]["policyName"]
        == "rel-channelapp-operator.ops-orphan"
    )
    for each in (binding, orphan_binding):
        assert each["spec"]["matchResources"]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "ops"}
        }
    off = template(helm, "--set", "admissionPolicy.create=false")
    assert not by_kind(off, "ValidatingAdmissionPolicy")
    assert not by_kind(off, "ValidatingAdmissionPolicyBinding")


def test_chart_crd_is_the_operator_crd() -> None:
    assert (CHART / "files" / "channelapps.yaml").read_text() == CRD.read_text(), (
        "run `make chart-crd` to copy operator/crd/channelapps.yaml into the chart"
    )


# --- against the cluster ----------------------------------------------------------------------


def adopt_crds(cluster: KubeCluster, release: str, namespace: str) -> None:
    """Let helm take over CRDs another installer (or an earlier release) left behind."""
    for crd in CRDS[:1]:  # the peering CRDs are in crds/, which helm never owns
        if cluster.kubectl("get", "crd", crd, check=False).returncode != 0:
            continue
        cluster.kubectl("label", "crd", crd, "--overwrite", "app.kubernetes.io/managed-by=Helm")
        cluster.kubectl(
            "annotate",
            "crd",
            crd,
            "--overwrite",
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )


@pytest.fixture
def release(kube_cluster: KubeCluster, namespace: str) -> Iterator[tuple[str, str]]:
    name = "chop"
    adopt_crds(kube_cluster, name, namespace)
    out = kube_cluster.helm(
        "install", name, str(CHART), "--namespace", namespace, "--wait", "--timeout", "120s"
    ).stdout
    assert "kubectl get channelapps" in out  # NOTES.txt
    try:
        yield name, namespace
    finally:
        kube_cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


@pytest.mark.cluster
def test_install_establishes_crds_runs_operator_and_uninstalls(
    kube_cluster: KubeCluster, release: tuple[str, str]
) -> None:
    name, ns = release
    for crd in CRDS:
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    dep = kube_cluster.kubectl_json("get", "deployment", f"{name}-channelapp-operator", "-n", ns)
    assert dep["status"]["availableReplicas"] == 2
    policy = f"{name}-channelapp-operator"
    kube_cluster.kubectl("get", "validatingadmissionpolicy", policy)
    kube_cluster.kubectl("get", "validatingadmissionpolicybinding", policy)
    kube_cluster.helm("uninstall", name, "--namespace", ns, "--wait")
    wait_for(
        lambda: kube_cluster.kubectl("get", "deployment", "-n", ns, "-o", "name").stdout == "",
        30,
        what="operator Deployment removed",
    )
    # CRDs stay (deleting a CRD deletes every ChannelApp).
    kube_cluster.kubectl("get", "crd", CRDS[0])


@pytest.mark.cluster
def test_chart_rbac_is_enough_and_no_more(
    kube_cluster: KubeCluster, release: tuple[str, str], tmp_path: Path
) -> None:
    name, ops_ns = release
    sa = f"{name}-channelapp-operator"
    who = f"system:serviceaccount:{ops_ns}:{sa}"
    app_ns = f"{ops_ns}-apps"
    kube_cluster.kubectl("create", "namespace", app_ns)
    try:
        for verb, resource in (
            ("create", "pods"),
            ("delete", "channelapps.channelapp.dev"),
            ("create", "clusterroles"),
            ("delete", "nodes"),
        ):
            out = kube_cluster.kubectl(
                "auth", "can-i", verb, resource, "-n", app_ns, f"--as={who}", check=False
            ).stdout.strip()
            assert out == "no", f"{verb} {resource}: {out}"
        kubeconfig = kube_cluster.token_kubeconfig(sa, ops_ns, tmp_path / "sa-kubeconfig")
        # The operator process as the chart runs it: cluster-wide, peering on, the chart's token.
        op = OperatorProcess(
            kube_cluster,
            app_ns,
            tmp_path,
            env={"KUBECONFIG": str(kubeconfig)},
            args=["--all-namespaces", "--peering=channelapp-operator"],
        ).start()
        try:
            (doc,) = load_example("chat.yaml")
            kube_cluster.kubectl("apply", "-n", app_ns, "-f", "-", input=yaml.safe_dump(doc))

            def ready() -> bool:
                # Children rolled out and ready; Ready itself stays False beside Degraded
                # (this operator, outside the cluster, cannot reach the managed shards).
                app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", app_ns)
                conds = app.get("status", {}).get("conditions", [])
                return any(
                    c["type"] == "Progressing" and c["reason"] == "RolloutComplete" for c in conds
                )

            try:
                wait_for(ready, 90, what="chat children ready through the chart's ServiceAccount")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\noperator log:\n{op.log()[-4000:]}") from None
            events = kube_cluster.kubectl("get", "events", "-n", app_ns).stdout
            assert "Created" in events
            # Drift correction with the same token: a deleted child comes back.
            uid = kube_cluster.kubectl_json("get", "service", "chat", "-n", app_ns)["metadata"][
                "uid"
            ]
            kube_cluster.kubectl("delete", "service", "chat", "-n", app_ns)
            wait_for(
                lambda: (
                    (
                        p := kube_cluster.kubectl(
                            "get", "service", "chat", "-n", app_ns, "-o", "json", check=False
                        )
                    ).returncode
                    == 0
                    and json.loads(p.stdout)["metadata"]["uid"] != uid
                ),
                30,
                what="Service re-created through the chart's ServiceAccount",
            )
            log = op.log()
            # Cluster-wide, it also meets apps of earlier tests whose namespaces are being
            # deleted: a 403 "being terminated" there is not a missing permission.
            records = re.split(r"\n(?=\d{4}-\d{2}-\d{2} )", log)
            denied = [
                record
                for record in records
                # (a word: a random peering priority may contain the digits 403; and not in
                # the record's timestamp, whose milliseconds may be 403)
                if ("Forbidden" in record or re.search(r"\b403\b", TIMESTAMP.sub("", record)))
                and "being terminated" not in record
            ]
            assert not denied, "\n".join(denied)[-3000:]
            peering = kube_cluster.kubectl_json("get", "clusterkopfpeering", "channelapp-operator")
            assert peering.get("status"), "the operator keeps its peering alive"
        finally:
            op.stop()
    finally:
        kube_cluster.kubectl("delete", "namespace", app_ns, "--wait=false")


@pytest.mark.cluster
def test_namespace_scoped_policy_binds_in_the_release_namespace_only(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str
) -> None:
    """A namespace-scoped release's operator acts in its namespace only: so does its policy,
    and another namespace's apps are left to whatever operator and policy serve them."""
    other = f"{namespace}-other"
    kube_cluster.kubectl("create", "namespace", other)
    manifests = template_text(
        kube_cluster, "--namespace", namespace, "--set", "rbac.scope=namespace",
        "--show-only", "templates/admission-policy.yaml",
    )  # fmt: skip
    node_port = {
        "apiVersion": "channelapp.dev/v1alpha1",
        "kind": "ChannelApp",
        "metadata": {"name": "np"},
        "spec": {
            "image": "example/app:1",
            "app": "chat.app:app",
            "protocol": {"serviceType": "NodePort"},
        },
    }
    users = {}
    for ns in (namespace, other):
        kube_cluster.kubectl(
            "create", "role", "apps", "-n", ns, "--verb=create,get",
            "--resource=channelapps.channelapp.dev",
        )  # fmt: skip
        kube_cluster.kubectl(
            "create",
            "rolebinding",
            "apps",
            "-n",
            ns,
            "--role=apps",
            f"--serviceaccount={ns}:author",
        )
        users[ns] = f"system:serviceaccount:{ns}:author"

    def create(ns: str) -> Any:
        return kube_cluster.kubectl(
            "create", "--dry-run=server", "-n", ns, "-f", "-", f"--as={users[ns]}",
            input=json.dumps(node_port), check=False,
        )  # fmt: skip

    try:
        kube_cluster.kubectl("apply", "-f", "-", input=manifests)
        wait_for(
            lambda: create(namespace).returncode != 0,
            60,
            what="the release namespace's policy refusing a NodePort app of an author without Service rights",
        )
        proc = create(namespace)
        assert f"ValidatingAdmissionPolicy 'rel-channelapp-operator.{namespace}'" in proc.stderr
        assert "spec.protocol.serviceType" in proc.stderr, proc.stderr
        proc = create(other)
        assert proc.returncode == 0, proc.stderr
    finally:
        kube_cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifests)
        kube_cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def template_text(cluster: KubeCluster, *args: str) -> str:
    return cluster.helm("template", "rel", str(CHART), *args).stdout


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    (dep,) = by_kind(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in c.get("env", [])}


def test_operator_is_told_the_runtime_image_of_its_release(helm: str) -> None:
    """The apps' protocol servers run the channelapp runtime of the operator's release (they
    never load an app): its image is the chart's appVersion unless runtimeImage says."""
    env = operator_env(template(helm))
    assert env["CHANNELAPP_RUNTIME_IMAGE"] == "ghcr.io/channelapp/channelapp:0.1.0"
    chosen = ["--set", "runtimeImage.repository=registry.example/runtime"]
    env = operator_env(template(helm, *chosen, "--set-string", "runtimeImage.tag=7"))
    assert env["CHANNELAPP_RUNTIME_IMAGE"] == "registry.example/runtime:7"
    proc = template(helm, "--set", "runtimeImage.repository=", check=False)
    assert proc.returncode != 0 and "/runtimeImage/repository" in proc.stderr, proc.stderr
