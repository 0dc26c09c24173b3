"""Where things are: the repository, the build cache and the Kubernetes binaries in it."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# State of `make cluster` (kubeconfig, pids): in the clone, ignored by git.
STATE_DIR = REPO / ".cluster"


class ToolError(RuntimeError):
    """A build input the tooling reads is missing or malformed."""


def cache_dir() -> Path:
    """Built binaries and images, outside the clone (``$CHANNELAPP_CACHE``)."""
    return Path(os.environ.get("CHANNELAPP_CACHE", Path.home() / ".cache" / "channelapp"))


def k8s_version() -> str:
    for line in (REPO / "hack/cluster/kubernetes/go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "require" and parts[1] == "k8s.io/kubernetes":
            return parts[2]
    raise ToolError("hack/cluster/kubernetes/go.mod does not require k8s.io/kubernetes")


def bin_dir() -> Path:
    return cache_dir() / f"k8s-{k8s_version()}" / "bin"
