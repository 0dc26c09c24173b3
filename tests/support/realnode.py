"""A real node joined to the test control plane: containerd + runc, kubelet, kube-proxy, CoreDNS.

Pods on it really run: the project's images (hack/images/build.sh) are imported into
containerd, the CNI ``bridge`` plugin puts each pod on ``cni0`` (10.88.0.0/16, a route only
to the service range, no way out of this machine), kube-proxy (iptables) carries Services
and CoreDNS, a host process on the bridge address, answers cluster names.

    python -m tests.support.realnode up     # control plane + real node, print the kubeconfig
    python -m tests.support.realnode down   # delete the workloads, stop, remove every trace
    python -m tests.support.realnode check  # list what a stopped node left behind

:meth:`RealNode.stop` deletes the workloads before it stops kubelet (pod processes live in
``/kubepods`` cgroups, outside any process group of ours), then removes containers, mounts,
network namespaces, veths, the bridge, the ``KUBE-*`` iptables chains, the cgroups and the
state directories; :func:`leftovers` says what is still there.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.controlplane import (
    NODE_NAME as KWOK_NODE,
)
from tests.support.controlplane import (
    REPO,
    ControlPlane,
    _cert,
    _key,
    _name,
    _pem_key,
    bin_dir,
    free_port,
    kubeconfig_text,
    stop_pids,
)

NODE = "real-node-0"
BRIDGE = "cni0"
BRIDGE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.0.0.0/24"
CNI_NETWORK = "channelapp-node"
CNI_BIN = Path("/usr/lib/cni")
KUBELET_ROOT = Path("/var/lib/kubelet")
STATE = Path("/var/lib/channelapp-node")  # containerd root, configs, logs
RUN = Path("/run/channelapp-node")  # containerd state and socket
CNI_STATE = Path("/var/lib/cni/networks") / CNI_NETWORK
EGRESS_CHAIN = "CHANNELAPP-POD-EGRESS"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
IMAGES_SCRIPT = REPO / "hack" / "images" / "build.sh"
NODE_SCRIPT = REPO / "hack" / "cluster" / "build-node.sh"
NODE_TOOLS = ("kubelet", "kube-proxy", "coredns")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "ip")
CGROUP_ROOT = Path("/sys/fs/cgroup")
STATE_FILE = REPO / ".cluster" / "realnode.json"


class NodeError(RuntimeError):
    """The real node could not be started or cleaned; the message says what and where."""


def cache_dir() -> Path:
    return Path(os.environ.get("CHANNELAPP_CACHE", Path.home() / ".cache" / "channelapp"))


def missing_tools() -> list[str]:
    """What the node needs and this machine lacks, each with where it comes from."""
    out = [
        f"{t} (apt-get install containerd runc iptables iproute2)"
        for t in HOST_TOOLS
        if not shutil.which(t)
    ]
    if not (CNI_BIN / "bridge").exists():
        out.append(f"{CNI_BIN}/bridge (apt-get install containernetworking-plugins)")
    out += [
        f"{bin_dir() / t} (bash hack/cluster/build-node.sh)"
        for t in NODE_TOOLS
        if not (bin_dir() / t).exists()
    ]
    if not (cache_dir() / "images" / "pause.oci.tar").exists():
        out.append(f"{cache_dir() / 'images' / 'pause.oci.tar'} (bash hack/cluster/build-node.sh)")
    return out


def build_node_tools() -> None:
    subprocess.run(["bash", str(NODE_SCRIPT)], check=True, stdout=subprocess.DEVNULL)


@dataclass
class Image:
    name: str
    ref: str
    archive: Path


def build_images() -> dict[str, Image]:
    """Build (or find in the cache) base, redis, app and operator images; name -> image."""
    proc = subprocess.run(
        ["nice", "-n", "10", "bash", str(IMAGES_SCRIPT)],
        check=True,
        capture_output=True,
        text=True,
    )
    images = {}
    for line in proc.stdout.splitlines():
        name, ref, archive = line.split()
        images[name] = Image(name, ref, Path(archive))
    return images


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        if check:
            raise NodeError(f"{argv[0]} is not installed") from None
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]} is not installed")
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _outside_interface() -> str:
    route = _run("ip", "-j", "route", "show", "default").stdout
    routes = json.loads(route or "[]")
    return routes[0]["dev"] if routes else "eth0"


# --- configuration files ---------------------------------------------------------------


def containerd_config() -> str:
    return f"""version = 2
root = "{STATE / "containerd"}"
state = "{RUN / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{RUN / "containerd.sock"}"

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
            "containerRuntimeEndpoint": f"unix://{RUN / 'containerd.sock'}",
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


def write_node_pki(plane: ControlPlane, into: Path) -> None:
    """A client certificate for the kubelet as system:node:<name>, signed by the test CA."""
    ca_key = serialization.load_pem_private_key((plane.pki / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((plane.pki / "ca.crt").read_bytes())
    key = _key()
    cert = _cert(
        _name(f"system:node:{NODE}", "system:nodes"),
        key,
        ca.subject,
        ca_key,  # type: ignore[arg-type]
        client=True,
    )
    into.mkdir(parents=True, exist_ok=True)
    (into / "kubelet.key").write_bytes(_pem_key(key))
    (into / "kubelet.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# --- the node --------------------------------------------------------------------------


@dataclass
class RealNode:
    """Start with :meth:`start` after the control plane, stop with :meth:`stop` before it."""

    plane: ControlPlane
    images: dict[str, Image] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    ip_forward_was: str = "0"
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def logs(self) -> Path:
        return STATE / "logs"

    def _log(self, msg: str) -> None:
        print(f"[realnode] {msg}", file=sys.stderr, flush=True)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=STATE,
            )
        self._procs.append(proc)
        self.pids[name] = proc.pid
        return proc

    def _fail(self, name: str, why: str) -> NodeError:
        log = self.logs / f"{name}.log"
        tail = ""
        if log.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        return NodeError(f"{name}: {why} (log: {log})\n{tail}")

    def _wait(self, name: str, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
        proc = self._procs[list(self.pids).index(name)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise self._fail(name, f"exited with code {proc.returncode}")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.3)
        raise self._fail(name, f"not ready after {timeout:.0f}s")

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return _run(
            "ctr", "--address", str(RUN / "containerd.sock"), "-n", "k8s.io", *args,
            check=check, timeout=timeout,
        ).stdout  # fmt: skip

    def start(self, images: dict[str, Image], timeout: float = 120.0) -> RealNode:
        missing = missing_tools()
        if missing:
            raise NodeError("the real node needs: " + "; ".join(missing))
        if leftovers():
            raise NodeError(
                "a previous real node left state behind: python -m tests.support.realnode down; "
                + "; ".join(leftovers())
            )
        taken = pod_network_taken()
        if taken:
            raise NodeError(
                f"{POD_CIDR} is already routed to {taken} (podman's default network, made by "
                f"`podman run`, uses it too): pods would be unreachable; ip link delete {taken}"
            )
        t0 = time.monotonic()
        self.images = images
        try:
            self._start_all(timeout)
        except BaseException:
            self.stop()
            raise
        self._log(f"node {NODE} Ready in {time.monotonic() - t0:.1f}s")
        return self

    def _network(self) -> None:
        self.ip_forward_was = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if bridge_nf.exists():
            bridge_nf.write_text("1\n")
        # The bridge exists before the first pod so the API server can advertise its address.
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{BRIDGE_IP}/16", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        out = _outside_interface()
        _run("iptables", "-w", "-N", EGRESS_CHAIN)
        _run("iptables", "-w", "-A", EGRESS_CHAIN, "-s", POD_CIDR, "-o", out, "-j", "DROP")
        _run("iptables", "-w", "-I", "FORWARD", "1", "-j", EGRESS_CHAIN)

    def _start_all(self, timeout: float) -> None:
        for d in (STATE / "cni", STATE / "pki", RUN):
            d.mkdir(parents=True, exist_ok=True)
        (STATE / "cni" / "10-channelapp.conflist").write_text(cni_config())
        (STATE / "containerd.toml").write_text(containerd_config())
        self._network()

        self._log("starting containerd")
        self._spawn(
            "containerd", [shutil.which("containerd") or "containerd", "--config", str(STATE / "containerd.toml")]
        )  # fmt: skip
        self._wait("containerd", lambda: self.ctr("version", timeout=5) != "", 30)

        t0 = time.monotonic()
        pause = cache_dir() / "images" / "pause.oci.tar"
        # The archive names itself registry.k8s.io/pause:3.10 (hack/cluster/build-node.sh).
        self.ctr("images", "import", str(pause))
        for image in self.images.values():
            if image.name != "base":
                self.ctr("images", "import", str(image.archive), timeout=300)
        # Earlier builds of the project's images go: the store is a cache of the current ones.
        current = {i.ref for i in self.images.values()}
        for ref in self.ctr("images", "ls", "-q").split():
            if ref.startswith("localhost/channelapp/") and ref not in current:
                self.ctr("images", "rm", ref, check=False)
        self._log(f"images imported in {time.monotonic() - t0:.1f}s")

        write_node_pki(self.plane, STATE / "pki")
        kubelet_kc = STATE / "kubelet.kubeconfig"
        kc = json.loads(kubeconfig_text(self.plane.server, self.plane.pki))
        kc["users"][0]["user"] = {
            "client-certificate": str(STATE / "pki" / "kubelet.crt"),
            "client-key": str(STATE / "pki" / "kubelet.key"),
        }
        kubelet_kc.write_text(json.dumps(kc))
        (STATE / "kubelet.yaml").write_text(kubelet_config(self.plane))
        (STATE / "kube-proxy.yaml").write_text(kube_proxy_config(self.plane.kubeconfig))
        (STATE / "Corefile").write_text(corefile(self.plane.kubeconfig))

        b = self.plane.bin_dir
        self._log("starting kubelet, kube-proxy, CoreDNS")
        self._spawn(
            "kubelet",
            [
                str(b / "kubelet"),
                f"--config={STATE / 'kubelet.yaml'}",
                f"--kubeconfig={kubelet_kc}",
                f"--hostname-override={NODE}",
                f"--node-ip={BRIDGE_IP}",
                f"--root-dir={KUBELET_ROOT}",
                f"--cert-dir={STATE / 'kubelet-pki'}",
                "--node-labels=type=real",
                "--v=1",
            ],
        )
        self._spawn("kube-proxy", [str(b / "kube-proxy"), f"--config={STATE / 'kube-proxy.yaml'}"])
        self._spawn("coredns", [str(b / "coredns"), "-conf", str(STATE / "Corefile")])
        # Real pods go to the real node only.
        self.plane.kubectl("cordon", KWOK_NODE)

        def node_ready() -> bool:
            node = json.loads(self.plane.kubectl("get", "node", NODE, "-o", "json").stdout)
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
            return ready and not node["spec"].get("taints")

        self._wait("kubelet", node_ready, timeout)
        self._wait(
            "kube-proxy",
            lambda: "KUBE-SERVICES" in _run("iptables", "-w", "-t", "nat", "-S").stdout,
            timeout,
        )

    # --- teardown ----------------------------------------------------------------------

    def delete_workloads(self, timeout: float = 90.0) -> None:
        """Delete every pod on the node through the API, while kubelet still runs to kill them."""
        kubectl = self.plane.kubectl
        if not self.plane.server:
            return
        with contextlib.suppress(Exception):
            kubectl("cordon", NODE)
            # Owners first, so nothing recreates the pods; the node is cordoned anyway.
            namespaces = json.loads(kubectl("get", "ns", "-o", "json").stdout)["items"]
            for ns in namespaces:
                name = ns["metadata"]["name"]
                if name.startswith("kube-") or name == "default":
                    continue
                kubectl("delete", "namespace", name, "--wait=false")
            kubectl(
                "delete", "pods", "-A", f"--field-selector=spec.nodeName={NODE}",
                "--wait=false", "--grace-period=5",
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self.ctr("tasks", "ls", "-q", check=False, timeout=10).split():
                    return
            except Exception:
                return
            time.sleep(1)

    def stop(self) -> None:
        """Delete the workloads, stop every process, remove every trace (idempotent)."""
        if self.pids.get("kubelet") and self._procs:
            self.delete_workloads()
        for name in ("kube-proxy", "coredns", "kubelet"):
            if name in self.pids:
                stop_pids([self.pids[name]])
        if "containerd" in self.pids:
            self._remove_containers()
            stop_pids([self.pids["containerd"]])
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
        self._procs.clear()
        self.pids.clear()
        clean_host(self.ip_forward_was)

    def _remove_containers(self) -> None:
        with contextlib.suppress(Exception):
            for task in self.ctr("tasks", "ls", "-q", check=False).split():
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", task, check=False)
            time.sleep(1)
            for task in self.ctr("tasks", "ls", "-q", check=False).split():
                self.ctr("tasks", "delete", "-f", task, check=False)
            for c in self.ctr("containers", "ls", "-q", check=False).split():
                self.ctr("containers", "delete", c, check=False)


def _shim_pids() -> list[int]:
    """containerd shims of our containerd: they carry its socket address on their command line."""
    address = str(RUN / "containerd.sock").encode()
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes()
            if b"containerd-shim" in cmd and address in cmd:
                out.append(int(proc.name))
    return out


def _node_pids() -> list[int]:
    """kubelet, kube-proxy, CoreDNS of the cache and a containerd with our configuration."""
    marks = [str(bin_dir() / t).encode() for t in NODE_TOOLS] + [
        str(STATE / "containerd.toml").encode()
    ]
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes()
            if any(cmd.startswith(m) or m in cmd.split(b"\0") for m in marks):
                out.append(int(proc.name))
    return out


def _kubepods_pids() -> list[int]:
    out: set[int] = set()
    for procs in CGROUP_ROOT.glob("*/kubepods*/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            out.update(int(p) for p in procs.read_text().split())
    return sorted(out)


def _mounts() -> list[str]:
    prefixes = (str(KUBELET_ROOT), str(STATE), str(RUN), "/run/netns/cni-", "/var/run/netns/cni-")
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefixes):
            out.append(target)
    return out


def _netns() -> list[str]:
    return (
        sorted(p.name for p in Path("/run/netns").glob("cni-*"))
        if Path("/run/netns").exists()
        else []
    )


def _veths() -> list[str]:
    links = json.loads(_run("ip", "-j", "link", "show", check=False).stdout or "[]")
    return [
        link["ifname"] for link in links if link["ifname"] == BRIDGE or link.get("master") == BRIDGE
    ]


IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")


def _chains() -> list[str]:
    out = []
    for tool in IPTABLES:
        if not shutil.which(tool):
            continue
        for table in TABLES:
            rules = _run(tool, "-w", "-t", table, "-S", check=False).stdout
            for line in rules.splitlines():
                parts = line.split()
                if parts[:1] == ["-N"] and (
                    parts[1].startswith("KUBE-") or parts[1] == EGRESS_CHAIN
                ):
                    out.append(f"{tool} {table} {parts[1]}")
    return out


def _cgroups() -> list[str]:
    return sorted(str(p) for p in CGROUP_ROOT.glob("*/kubepods*"))


def pod_network_taken() -> str | None:
    """Another interface that holds a route for the pod network (not the node's bridge)."""
    routes = json.loads(_run("ip", "-j", "route", "show", POD_CIDR).stdout or "[]")
    for route in routes:
        if route.get("dev") != BRIDGE:
            return str(route.get("dev"))
    return None


def leftovers() -> list[str]:
    """Everything a stopped real node must not leave behind, one line per thing found."""
    found = [f"process {p} (node component)" for p in _node_pids()]
    found += [f"process {p} (containerd shim)" for p in _shim_pids()]
    found += [f"process {p} (in a kubepods cgroup)" for p in _kubepods_pids()]
    found += [f"mount {m}" for m in _mounts()]
    found += [f"netns {n}" for n in _netns()]
    found += [f"link {v}" for v in _veths()]
    found += [f"iptables chain {c}" for c in _chains()]
    found += [f"cgroup {c}" for c in _cgroups()]
    found += [f"directory {d}" for d in (KUBELET_ROOT, RUN, CNI_STATE) if d.exists()]
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _clean_iptables() -> None:
    """Drop the KUBE-* chains and ours, with every rule that jumps to them, table by table."""
    for tool in IPTABLES:
        if not shutil.which(tool):
            continue
        for table in TABLES:
            rules = _run(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines()
            ours = {
                r.split()[1]
                for r in rules
                if r.startswith("-N ")
                and (r.split()[1].startswith("KUBE-") or r.split()[1] == EGRESS_CHAIN)
            }
            if not ours:
                continue
            for rule in rules:
                parts = shlex.split(rule)  # comments are quoted
                if parts[:1] == ["-A"] and parts[1] not in ours and any(c in parts for c in ours):
                    _run(tool, "-w", "-t", table, "-D", *parts[1:], check=False)
            for chain in ours:
                _run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in ours:
                _run(tool, "-w", "-t", table, "-X", chain, check=False)


def _remove_cgroups() -> None:
    for top in CGROUP_ROOT.glob("*/kubepods*"):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def clean_host(ip_forward: str | None = None) -> None:
    """Remove whatever a real node left on this machine; safe to run at any time after stop."""
    for _ in range(3):
        pids = _shim_pids() + _kubepods_pids()
        if not pids:
            break
        _kill(pids)
        time.sleep(0.5)
    for target in sorted(_mounts(), key=lambda m: -m.count("/")):
        _run("umount", "-l", target, check=False)
    for ns in _netns():
        _run("ip", "netns", "delete", ns, check=False)
    for link in _veths():
        if link != BRIDGE:
            _run("ip", "link", "delete", link, check=False)
    if BRIDGE in _veths():
        _run("ip", "link", "delete", BRIDGE, check=False)
    _clean_iptables()
    _remove_cgroups()
    for d in (KUBELET_ROOT, RUN, CNI_STATE, STATE / "kubelet-pki", STATE / "pki"):
        shutil.rmtree(d, ignore_errors=True)
    if ip_forward is not None:
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text(f"{ip_forward}\n")


# --- command line ----------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    if STATE_FILE.exists():
        print("a real node is already up: python -m tests.support.realnode down")
        return 1
    missing = missing_tools()
    if missing:
        build_node_tools()
    images = build_images()
    plane = ControlPlane(
        Path(tempfile.mkdtemp(prefix="channelapp-cluster-")), advertise_address=BRIDGE_IP
    )
    try:
        plane.start()
        node = RealNode(plane).start(images)
    except BaseException:
        plane.stop()
        raise
    STATE_FILE.parent.mkdir(exist_ok=True)
    STATE_FILE.write_text(
        json.dumps(
            {
                "plane": plane.to_state(),
                "node": node.pids,
                "ip_forward": node.ip_forward_was,
                "images": {k: v.ref for k, v in images.items()},
            },
            indent=2,
        )
    )
    print(f"real node {NODE} Ready; images: " + " ".join(i.ref for i in images.values()))
    link = STATE_FILE.parent / "kubeconfig"
    shutil.copy(plane.kubeconfig, link)
    print(f"export KUBECONFIG={link}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        plane = ControlPlane(Path(state["plane"]["workdir"]), server=state["plane"]["server"])
        node = RealNode(plane, pids=state["node"], ip_forward_was=state["ip_forward"])
        node.delete_workloads()
        for name in ("kube-proxy", "coredns", "kubelet"):
            stop_pids([node.pids[name]])
        node._remove_containers()
        stop_pids([node.pids["containerd"]])
        stop_pids([c["pid"] for c in state["plane"]["components"]])
        shutil.rmtree(state["plane"]["workdir"], ignore_errors=True)
        clean_host(state["ip_forward"])
        STATE_FILE.unlink()
        (STATE_FILE.parent / "kubeconfig").unlink(missing_ok=True)
    elif args.force:
        clean_host()
    else:
        left = leftovers()
        if left:
            print(
                "no real node was started here, yet its traces are: remove them with "
                "python -m tests.support.realnode down --force (it removes /var/lib/kubelet)"
            )
        else:
            print("no real node is running")
        return 0
    left = leftovers()
    for line in left:
        print(f"left behind: {line}")
    print("real node stopped" if not left else "real node stopped, with leftovers")
    return 1 if left else 0


def cmd_check(args: argparse.Namespace) -> int:
    left = leftovers()
    for line in left:
        print(line)
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.realnode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build what is missing, start a control plane and a real node")
    down = sub.add_parser("down", help="delete the workloads, stop everything, remove every trace")
    down.add_argument(
        "--force",
        action="store_true",
        help="remove the traces of a node this command did not start (e.g. after a crash)",
    )
    sub.add_parser("check", help="list what a stopped node left behind (exit 1 if anything)")
    args = parser.parse_args(argv)
    return {"up": cmd_up, "down": cmd_down, "check": cmd_check}[args.command](args)


def start_for_tests(images: dict[str, Image]) -> tuple[ControlPlane, RealNode]:
    """A control plane and a real node, stopped at interpreter exit at the latest."""
    plane = ControlPlane(
        Path(tempfile.mkdtemp(prefix="channelapp-cluster-")), advertise_address=BRIDGE_IP
    )
    plane.start()
    node = RealNode(plane)
    atexit.register(plane.stop)
    atexit.register(node.stop)
    try:
        node.start(images)
    except BaseException:
        plane.stop()
        raise
    return plane, node


if __name__ == "__main__":
    sys.exit(main())
