"""How tests, benchmarks and tools reach a cluster: a kubeconfig, an environment, kubectl and helm."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.controlplane import ControlPlane


@dataclass
class KubeCluster:
    """kubectl and helm with ``KUBECONFIG`` set and helm's homes beside the kubeconfig."""

    kubeconfig: Path
    bin_dir: Path
    kubectl_path: str
    helm_path: str
    plane: ControlPlane | None = None
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_plane(cls, plane: ControlPlane) -> KubeCluster:
        """The cluster of a control plane started here (its kubeconfig, its kubectl and helm)."""
        return cls(
            plane.kubeconfig,
            plane.bin_dir,
            str(plane.bin_dir / "kubectl"),
            str(plane.bin_dir / "helm"),
            plane,
        )

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

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl(*args, "-o", "json").stdout)
        return out

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self._run([self.helm_path, *args], check, input, timeout)

    def token_kubeconfig(self, sa: str, ns: str, path: Path) -> Path:
        """A kubeconfig at ``path`` for ServiceAccount ``ns/sa``: this cluster's server and CA,
        a token of one hour."""
        token = self.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
        raw = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        cluster = raw["clusters"][0]["cluster"]
        ca = cluster.get("certificate-authority-data")
        if ca is None:
            ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "sa",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": cluster["server"], "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        return path

    def patch_channelapp(
        self,
        ns: str,
        name: str,
        patch: dict[str, Any] | list[dict[str, Any]],
        *,
        as_user: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl patch channelapp``: a merge patch (a dict) or a JSON patch (a list of ops)."""
        kind = "json" if isinstance(patch, list) else "merge"
        user = [f"--as={as_user}"] if as_user else []
        return self.kubectl(
            "patch", "channelapp", name, "-n", ns, f"--type={kind}", *user,
            "-p", json.dumps(patch), check=check,
        )  # fmt: skip
