"""The operator's /healthz and /readyz as its probes see them, with no app and with no peering."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.kube import KubeCluster
from devtools.operator import ROOT, OperatorProcess
from devtools.polling import wait_for

pytestmark = pytest.mark.cluster

PEERING_CRDS = ROOT / "charts" / "channelapp-operator" / "crds" / "kopf-peerings.yaml"
LIVENESS_WINDOW = 3.0


def test_operator_with_no_apps_stays_alive(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str, tmp_path: Path
) -> None:
    op = OperatorProcess(
        kube_cluster,
        namespace,
        tmp_path,
        args=["--standalone", "--namespace", namespace,
              "--liveness-timeout", str(LIVENESS_WINDOW)],
    ).start()  # fmt: skip
    try:
        # More than twice the window with nothing to supervise: never "stalled".
        deadline = time.monotonic() + 2.5 * LIVENESS_WINDOW
        while time.monotonic() < deadline:
            assert op.probe("/healthz") == 200, op.log()[-2000:]
            time.sleep(0.5)
        assert op.probe("/readyz") == 200
    finally:
        op.stop()


def test_missing_peering_is_loud_and_not_ready(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str, tmp_path: Path
) -> None:
    kube_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS)
    )  # fmt: skip
    op = OperatorProcess(
        kube_cluster, namespace, tmp_path, args=["--namespace", namespace, "--peering=lost"]
    ).start(wait_ready=False)
    try:
        wait_for(lambda: "peering object 'lost' is missing" in op.log(), 60, what="error line")
        assert " ERROR " in next(
            line for line in op.log().splitlines() if "peering object 'lost'" in line
        )
        for _ in range(6):
            assert op.probe("/readyz") in (503, None)
            time.sleep(0.5)
        kube_cluster.kubectl(
            "apply", "-n", namespace, "-f", "-",
            input="apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {name: lost}\n",
        )  # fmt: skip
        wait_for(lambda: op.probe("/readyz") == 200, 30, what="ready once the peering exists")
    finally:
        op.stop()
