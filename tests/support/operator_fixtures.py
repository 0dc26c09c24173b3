"""Pytest fixtures: the ChannelApp CRD installed in the test cluster, and the operator run as a
real process (devtools.operator)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.kube import KubeCluster
from devtools.operator import CRD, OperatorProcess


@pytest.fixture(scope="session")
def channelapp_crd(kube_cluster: KubeCluster) -> str:
    # --force-conflicts: the chart's tests may have installed the same CRD through helm.
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/channelapps.channelapp.dev", "--timeout=60s"
    )
    return "channelapps.channelapp.dev"


@pytest.fixture
def operator(
    kube_cluster: KubeCluster, namespace: str, channelapp_crd: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(kube_cluster, namespace, tmp_path).start()
    try:
        yield proc
    finally:
        proc.stop()
        artifacts = os.environ.get("CHANNELAPP_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            (Path(artifacts) / proc.log_path.name).write_text(proc.log())
