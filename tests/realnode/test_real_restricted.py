"""Every pod the operator creates is admitted in a namespace enforcing the restricted profile."""

from __future__ import annotations

import json
import time

import pytest

from devtools.realnode.bringup import RealCluster
from devtools.realnode.workloads import default_service_account, example_with_test_images

pytestmark = [pytest.mark.realnode, pytest.mark.cluster]

NAMESPACE = "restricted"


def test_every_pod_is_admitted_under_pod_security_restricted(
    real_cluster: RealCluster, real_operator: object
) -> None:
    kube = real_cluster.kube
    kube.kubectl("create", "namespace", NAMESPACE)
    kube.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    default_service_account(kube, NAMESPACE)
    doc = example_with_test_images(real_cluster)
    doc["spec"]["protocol"]["replicas"] = 1
    doc["spec"]["redis"]["managed"]["shards"] = 1
    kube.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(doc))
    app = doc["metadata"]["name"]
    # protocol, worker, one Redis shard (master and replica) and its Sentinels; a refused pod
    # shows as a FailedCreate event.
    expected = [f"{app}-protocol-", f"{app}-worker-", f"{app}-redis-0", f"{app}-redis-1"]
    expected += [f"{app}-redis-sentinel-{i}" for i in range(3)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        refused = kube.kubectl(
            "get", "events", "-n", NAMESPACE, "--field-selector", "reason=FailedCreate",
            "-o", "jsonpath={.items[*].message}",
        ).stdout  # fmt: skip
        assert refused.strip() == "", refused[:2000]
        pods = kube.kubectl_json("get", "pods", "-n", NAMESPACE)["items"]
        ready = [
            p["metadata"]["name"]
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        if all(any(name.startswith(prefix) for name in ready) for prefix in expected):
            return
        time.sleep(2)
    raise AssertionError(
        f"not every pod Ready: expected {expected}, ready {ready}, "
        f"all {[p['metadata']['name'] for p in pods]}"
    )
