"""Pytest fixtures for a Kubernetes cluster: the built control plane, or any real one.

``kube_cluster`` (session) starts :class:`tests.support.controlplane.ControlPlane`
(building the binaries on first use), or, when ``CHANNELAPP_TEST_KUBECONFIG`` is
set, or ``KUBECONFIG`` together with ``CHANNELAPP_USE_EXISTING_CLUSTER=1``, uses
that cluster (kind, k3d, a real one) unchanged and never stops it.
``namespace`` gives each test a fresh namespace and deletes it afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane, bin_dir, ensure_tools, start_for_tests


@dataclass
class KubeCluster:
    """How tests reach the cluster: a kubeconfig, an environment, kubectl and helm."""

    kubeconfig: Path
    bin_dir: Path
    kubectl_path: str
    helm_path: str
    plane: ControlPlane | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        # helm keeps its cache and config per user; keep them out of the user's home.
        helm_home = self.kubeconfig.parent / "helm-home"
        for var, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env[var] = str(helm_home / sub)
        self.env = env

    @property
    def external(self) -> bool:
        return self.plane is None

    def _run(
        self, argv: list[str], check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv, env=self.env, input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run([self.kubectl_path, *args], check, input, timeout)

    def kubectl_json(self, *args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._run([self.helm_path, *args], check, input, timeout)


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
        yield KubeCluster(
            plane.kubeconfig,
            plane.bin_dir,
            str(plane.bin_dir / "kubectl"),
            str(plane.bin_dir / "helm"),
            plane,
        )
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
