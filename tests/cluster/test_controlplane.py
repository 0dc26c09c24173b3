"""The test control plane is a real Kubernetes: API server, scheduling, controllers, GC, CRDs, RBAC, helm."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from devtools.kube import KubeCluster
from devtools.polling import wait_for

pytestmark = pytest.mark.cluster


def test_kubectl_version_answers(kube_cluster: KubeCluster) -> None:
    out = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["major"] == "1"
    assert int(out["serverVersion"]["minor"].rstrip("+")) >= 31


def test_simulated_node_is_ready(kube_cluster: KubeCluster) -> None:
    nodes = kube_cluster.kubectl_json("get", "nodes")["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    assert ready, f"no Ready node in {[n['metadata']['name'] for n in nodes]}"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.invalid/web:1}]
"""


def test_deployment_rolls_out_and_is_garbage_collected(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)
    kube_cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s")
    pods = kube_cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 3
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    rs = kube_cluster.kubectl_json("get", "replicasets", "-n", namespace)["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    deploy = kube_cluster.kubectl_json("get", "deployment/web", "-n", namespace)
    assert deploy["status"]["readyReplicas"] == 3

    # Orphan-free delete in the background: the garbage collector must remove RS and pods.
    kube_cluster.kubectl("delete", "deployment/web", "-n", namespace, "--cascade=background")

    def gone() -> bool:
        left = kube_cluster.kubectl_json("get", "replicasets,pods", "-n", namespace)["items"]
        # kwok deletes pods immediately once the GC marks them; terminating ones count as gone.
        return all(o["metadata"].get("deletionTimestamp") for o in left)

    wait_for(gone, timeout=60)


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.channelapp.dev
spec:
  group: test.channelapp.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
              fieldPath: ".minReplicas"
            properties:
              minReplicas: {type: integer, minimum: 0}
              maxReplicas: {type: integer, maximum: 100}
"""


def test_crd_schema_and_cel_rules_reject_bad_objects(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-f", "-", input=CRD)
    try:
        kube_cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/widgets.test.channelapp.dev",
            "--timeout=30s",
        )

        def widget(spec: str) -> str:
            return f"apiVersion: test.channelapp.dev/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {spec}\n"

        bad_cel = kube_cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=widget("{minReplicas: 5, maxReplicas: 2}"),
            check=False,
        )
        assert bad_cel.returncode != 0
        assert "spec.minReplicas" in bad_cel.stderr and "must not exceed" in bad_cel.stderr

        bad_schema = kube_cluster.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=widget("{minReplicas: 1, maxReplicas: 500}"),
            check=False,
        )
        assert bad_schema.returncode != 0 and "spec.maxReplicas" in bad_schema.stderr

        good = kube_cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=widget("{minReplicas: 1, maxReplicas: 5}")
        )
        assert "created" in good.stdout
    finally:
        kube_cluster.kubectl(
            "delete", "crd/widgets.test.channelapp.dev", "--wait=false", check=False
        )


def test_helm_install_and_uninstall(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: {{ .Release.Name }}-cm}
            data: {greeting: {{ .Values.greeting | quote }}}
            """
        )
    )
    kube_cluster.helm(
        "install", "tiny", str(chart), "-n", namespace, "--set", "greeting=hi", "--wait"
    )
    cm = kube_cluster.kubectl_json("get", "configmap", "tiny-cm", "-n", namespace)
    assert cm["data"]["greeting"] == "hi"
    assert "tiny" in kube_cluster.helm("list", "-n", namespace, "-q").stdout.split()
    kube_cluster.helm("uninstall", "tiny", "-n", namespace, "--wait")
    missing = kube_cluster.kubectl("get", "configmap", "tiny-cm", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_rbac_is_enforced(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    who = f"system:serviceaccount:{namespace}:nobody"
    can = kube_cluster.kubectl(
        "auth", "can-i", "list", "pods", "-n", namespace, f"--as={who}", check=False
    )
    assert can.stdout.strip() == "no"
    refused = kube_cluster.kubectl("get", "pods", "-n", namespace, f"--as={who}", check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()

    # A token issued by the API server authenticates, and a Role grants exactly what it says.
    token = kube_cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    assert token.count(".") == 2
    kube_cluster.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace
    )
    kube_cluster.kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:nobody",
        "-n",
        namespace,
    )
    wait_for(
        lambda: (
            kube_cluster.kubectl(
                "auth", "can-i", "list", "pods", "-n", namespace, f"--as={who}", check=False
            ).stdout.strip()
            == "yes"
        ),
        timeout=10,
    )
    still_no = kube_cluster.kubectl(
        "auth", "can-i", "delete", "pods", "-n", namespace, f"--as={who}", check=False
    )
    assert still_no.stdout.strip() == "no"


def test_teardown_leaves_no_process(tmp_path: Path) -> None:
    """A second, independent control plane: after stop() none of its processes is alive."""
    if os.environ.get("CHANNELAPP_TEST_KUBECONFIG") or os.environ.get(
        "CHANNELAPP_USE_EXISTING_CLUSTER"
    ):
        pytest.skip("uses the built control plane; not meaningful against an existing cluster")
    from devtools.controlplane import ControlPlane, ensure_tools

    ensure_tools()
    plane = ControlPlane(tmp_path / "plane")
    try:
        plane.start()
        pids = plane.pids
        assert len(pids) == 5  # etcd, apiserver, controller-manager, scheduler, kwok
        assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    finally:
        plane.stop()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not alive, f"processes left behind: {alive}"
