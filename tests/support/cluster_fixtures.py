"""Pytest fixtures for a Kubernetes cluster: the built control plane, or any real one.

``kube_cluster`` (session) starts :class:`devtools.controlplane.ControlPlane`
(building the binaries on first use), or, when ``CHANNELAPP_TEST_KUBECONFIG`` is
set, or ``KUBECONFIG`` together with ``CHANNELAPP_USE_EXISTING_CLUSTER=1``, uses
that cluster (kind, k3d, a real one) unchanged and never stops it.
``namespace`` gives each test a fresh namespace and deletes it afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.controlplane import ensure_tools, start_for_tests
from devtools.kube import KubeCluster
from devtools.paths import bin_dir


def _existing_kubeconfig() -> Path | None:
    explicit = os.environ.get("CHANNELAPP_TEST_KUBECONFIG")
    if explicit:
        return Path(explicit)
    if os.environ.get("CHANNELAPP_USE_EXISTING_CLUSTER") == "1" and os.environ.get("KUBECONFIG"):
        return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    return None


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    existing = _existing_kubeconfig()
    if existing is not None:
        tools = bin_dir()
        kubectl = (
            str(tools / "kubectl") if (tools / "kubectl").exists() else shutil.which("kubectl")
        )
        helm = str(tools / "helm") if (tools / "helm").exists() else shutil.which("helm")
        if not kubectl or not helm:
            ensure_tools()
            kubectl, helm = str(tools / "kubectl"), str(tools / "helm")
        # A private copy so that helm's home beside it stays in the test's temp dir.
        copy = tmp_path_factory.mktemp("existing") / "kubeconfig"
        shutil.copy(existing, copy)
        yield KubeCluster(copy, tools, kubectl, helm)
        return
    plane = start_for_tests()
    try:
        yield KubeCluster.for_plane(plane)
    finally:
        plane.stop()


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_cluster.kubectl("create", "namespace", name)
    # The service-account controller creates "default"; pods need it to be admitted.
    kube_cluster.kubectl(
        "wait",
        "--for=jsonpath={.metadata.name}=default",
        "serviceaccount/default",
        "-n",
        name,
        "--timeout=30s",
        check=False,
    )
    try:
        yield name
    finally:
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
