"""A real node joined to the test control plane: containerd + runc, kubelet, kube-proxy, CoreDNS.

Pods on it really run: the project's images (hack/images/build.sh) are imported into containerd,
the CNI ``bridge`` plugin puts each pod on ``cni0`` (10.88.0.0/16, a route only to the service
range, no way out of this machine), kube-proxy (iptables) carries Services and CoreDNS, a host
process on the bridge address, answers cluster names.

    python -m devtools.realnode up     # control plane + real node, print the kubeconfig
    python -m devtools.realnode down   # delete the workloads, stop, remove every trace
    python -m devtools.realnode check  # list what a stopped node left behind

One job a module:

- ``common``: where the node lives on this machine (paths, addresses), running host commands;
- ``images``: what the node lacks, building its parts and images (cached), importing them;
- ``configs``: containerd, CNI, kubelet (with its certificate), kube-proxy and CoreDNS files;
- ``network``: the bridge, forwarding, the egress drop, and removing them;
- ``node``: :class:`RealNode`, the containerd/kubelet/kube-proxy/CoreDNS processes;
- ``teardown``: :func:`leftovers` and :func:`clean_host`, what a stopped node must not leave;
- ``bringup``: a control plane with the node and the images (:class:`RealCluster`);
- ``workloads``: the operator helm-installed, ChannelApps applied and awaited Ready;
- ``jobs``: the jobs example's surge on real worker pods (a test and a benchmark run it);
- ``__main__``: the command line (``make cluster NODE=real`` / ``make cluster-down``).
"""

from devtools.realnode.bringup import RealCluster, start_for_tests, started_real_cluster
from devtools.realnode.common import BRIDGE_IP, NODE, NodeError
from devtools.realnode.images import Image, build_images, build_node_tools, missing_tools
from devtools.realnode.network import pod_network_taken
from devtools.realnode.node import RealNode
from devtools.realnode.teardown import clean_host, leftovers

__all__ = [
    "BRIDGE_IP",
    "NODE",
    "Image",
    "NodeError",
    "RealCluster",
    "RealNode",
    "build_images",
    "build_node_tools",
    "clean_host",
    "leftovers",
    "missing_tools",
    "pod_network_taken",
    "start_for_tests",
    "started_real_cluster",
]
