"""Where the real node lives on this machine, and running the host's commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devtools import controlplane
from devtools.paths import REPO, STATE_DIR

NODE = "real-node-0"
BRIDGE = "cni0"
BRIDGE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
# Pods route Service addresses to the node (kube-proxy): the whole range the API server hands out.
SERVICE_CIDR = controlplane.SERVICE_CIDR
CNI_NETWORK = "channelapp-node"
CNI_BIN = Path("/usr/lib/cni")
KUBELET_ROOT = Path("/var/lib/kubelet")
STATE = Path("/var/lib/channelapp-node")  # containerd root, configs, logs
RUN = Path("/run/channelapp-node")  # containerd state and socket
CONTAINERD_SOCKET = RUN / "containerd.sock"
CNI_STATE = Path("/var/lib/cni/networks") / CNI_NETWORK
EGRESS_CHAIN = "CHANNELAPP-POD-EGRESS"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
IMAGES_SCRIPT = REPO / "hack" / "images" / "build.sh"
NODE_SCRIPT = REPO / "hack" / "cluster" / "build-node.sh"
NODE_TOOLS = ("kubelet", "kube-proxy", "coredns")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "ip")
CGROUP_ROOT = Path("/sys/fs/cgroup")
STATE_FILE = STATE_DIR / "realnode.json"


class NodeError(RuntimeError):
    """The real node could not be started or cleaned; the message says what and where."""


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure (with ``check``) is a :class:`NodeError` with its stderr."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        if check:
            raise NodeError(f"{argv[0]} is not installed") from None
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]} is not installed")
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def ctr(*args: str, check: bool = True, timeout: float = 120) -> str:
    """``ctr`` against the node's containerd, in the CRI's ``k8s.io`` namespace."""
    return run(
        "ctr", "--address", str(CONTAINERD_SOCKET), "-n", "k8s.io", *args,
        check=check, timeout=timeout,
    ).stdout  # fmt: skip
