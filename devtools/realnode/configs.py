"""The node's configuration files: containerd, CNI, kubelet (and its certificate), kube-proxy,
CoreDNS."""

from __future__ import annotations

import json
from pathlib import Path

from devtools.controlplane import ControlPlane, kubeconfig_text
from devtools.pki import name, write_client_cert
from devtools.procs import free_port
from devtools.realnode.common import (
    BRIDGE,
    BRIDGE_IP,
    CNI_BIN,
    CNI_NETWORK,
    CONTAINERD_SOCKET,
    NODE,
    PAUSE_IMAGE,
    POD_CIDR,
    RUN,
    SERVICE_CIDR,
    STATE,
)


def containerd_config() -> str:
    return f"""version = 2
root = "{STATE / "containerd"}"
state = "{RUN / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: no oom_score_adj below the runtime's own.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{STATE / "cni"}"
"""


def cni_config() -> str:
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": BRIDGE_IP}]],
                        # Pods reach the bridge (API server, DNS) and Services: nothing else.
                        "routes": [{"dst": SERVICE_CIDR}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet_config(plane: ControlPlane) -> str:
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": BRIDGE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(plane.pki / "ca.crt")},
            },
            # Only holders of a certificate of the test CA get past authentication.
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "clusterDomain": "cluster.local",
            "clusterDNS": [BRIDGE_IP],
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "makeIPTablesUtilChains": True,
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%"},
            "podPidsLimit": 4096,
            "maxPods": 60,
            "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "localStorageCapacityIsolation": False,
            "featureGates": {},
        },
        indent=2,
    )


def kube_proxy_config(kubeconfig: Path) -> str:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": NODE,
            "clusterCIDR": POD_CIDR,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # No sysctl writes: root here may not raise kernel limits.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
        },
        indent=2,
    )


def corefile(kubeconfig: Path) -> str:
    return f""".:53 {{
    bind {BRIDGE_IP}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} channelapp-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""


def write_kubelet_credentials(plane: ControlPlane, into: Path) -> Path:
    """A ``system:node:<name>`` client certificate signed by the test CA, and a kubeconfig with it."""
    write_client_cert(
        plane.pki, into / "pki", "kubelet", name(f"system:node:{NODE}", "system:nodes")
    )
    kc = json.loads(kubeconfig_text(plane.server, plane.pki))
    kc["users"][0]["user"] = {
        "client-certificate": str(into / "pki" / "kubelet.crt"),
        "client-key": str(into / "pki" / "kubelet.key"),
    }
    path = into / "kubelet.kubeconfig"
    path.write_text(json.dumps(kc))
    return path


def write_all(plane: ControlPlane) -> Path:
    """Every file the node's processes read, under the state directory; the kubelet's kubeconfig."""
    for d in (STATE / "cni", STATE / "pki", RUN):
        d.mkdir(parents=True, exist_ok=True)
    (STATE / "cni" / "10-channelapp.conflist").write_text(cni_config())
    (STATE / "containerd.toml").write_text(containerd_config())
    (STATE / "kubelet.yaml").write_text(kubelet_config(plane))
    (STATE / "kube-proxy.yaml").write_text(kube_proxy_config(plane.kubeconfig))
    (STATE / "Corefile").write_text(corefile(plane.kubeconfig))
    return write_kubelet_credentials(plane, STATE)
