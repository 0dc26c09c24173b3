"""A real Kubernetes control plane on loopback, for tests and local runs.

etcd (Debian's ``etcd-server``), kube-apiserver (secure port, RBAC, service
account tokens, an admin client certificate), kube-controller-manager (garbage
collection, Deployment and ReplicaSet status), kube-scheduler and kwok, which
simulates one node and marks its pods Running. The binaries come from
``hack/cluster/build.sh``.

    python -m devtools.controlplane up      # start, print the kubeconfig
    python -m devtools.controlplane status
    python -m devtools.controlplane down    # stop everything, remove the data
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devtools.paths import REPO, STATE_DIR, ToolError, bin_dir
from devtools.pki import write_pki
from devtools.procs import alive, free_port, stop_pids

BUILD_SCRIPT = REPO / "hack" / "cluster" / "build.sh"
NODE_NAME = "kwok-node-0"
# Sized for benchmarks of a thousand-odd apps: a Service each needs a cluster IP (a /24
# held about 250), and the one simulated node holds their pods (kwok's pod range too).
SERVICE_CIDR = "10.0.0.0/16"  # the kubernetes Service keeps 10.0.0.1 (the API server's cert)
POD_CIDR = "10.1.0.1/16"
POD_CAPACITY = "4000"


class ControlPlaneError(ToolError):
    """The control plane could not be started; the message names the component and its log."""


TOOLS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "helm", "kwok")


def ensure_tools(*, log: bool = True) -> Path:
    """Build the binaries if any is missing or stale (the script is idempotent and fast when warm)."""
    target = bin_dir()
    if all((target / t).exists() for t in TOOLS):
        return target
    out = None if log else subprocess.DEVNULL
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=out)
    return target


def kubeconfig_text(server: str, pki: Path) -> str:
    """A kubeconfig for the admin user (JSON is valid YAML)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "channelapp-test",
                    "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki / "admin.crt"),
                        "client-key": str(pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "channelapp-test",
                    "context": {"cluster": "channelapp-test", "user": "admin"},
                }
            ],
            "current-context": "channelapp-test",
        },
        indent=2,
    )


NODE_MANIFEST = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": NODE_NAME,
        "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        "labels": {
            "type": "kwok",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/role": "agent",
        },
    },
    "spec": {},
    "status": {
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": POD_CAPACITY},
        "capacity": {"cpu": "64", "memory": "256Gi", "pods": POD_CAPACITY},
        "nodeInfo": {
            "architecture": "amd64",
            "kubeletVersion": "fake",
            "kubeProxyVersion": "fake",
            "operatingSystem": "linux",
        },
        "phase": "Running",
    },
}


# --- processes --------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    pid: int
    log: str


@dataclass
class ControlPlane:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent, kills whole process groups)."""

    workdir: Path
    bin_dir: Path = field(default_factory=bin_dir)
    components: list[Component] = field(default_factory=list)
    server: str = ""
    # Set for a real node (devtools/realnode): the API server listens on every
    # address, advertises this one (the pods' bridge) to the kubernetes Service, and
    # reaches kubelets by InternalIP with the admin client certificate.
    advertise_address: str | None = None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.components]

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() kills the group
                cwd=self.workdir,
            )
        self._procs.append(proc)
        self.components.append(Component(name, proc.pid, str(log_path)))
        return proc

    def _fail(self, component: str, why: str) -> ControlPlaneError:
        log = self.workdir / "logs" / f"{component}.log"
        tail = ""
        if log.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        return ControlPlaneError(f"{component}: {why} (log: {log})\n{tail}")

    def _wait(self, component: str, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        proc = next(
            p for p, c in zip(self._procs, self.components, strict=True) if c.name == component
        )
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise self._fail(component, f"exited with code {proc.returncode}")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise self._fail(component, f"not ready after {timeout:.0f}s")

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def api_get(self, path: str) -> tuple[int, bytes]:
        req = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, timeout: float = 60.0) -> ControlPlane:
        t0 = time.monotonic()
        for tool in TOOLS:
            if not (self.bin_dir / tool).exists():
                raise ControlPlaneError(
                    f"{self.bin_dir / tool} is missing: run `make cluster-tools` (hack/cluster/build.sh)"
                )
        etcd = shutil.which("etcd")
        if not etcd:
            raise ControlPlaneError("etcd is not installed: apt-get install etcd-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_pki(self.pki, [self.advertise_address] if self.advertise_address else None)
        try:
            self._start_all(etcd, timeout)
        except BaseException:
            self.stop()
            raise
        self._log(f"control plane ready in {time.monotonic() - t0:.1f}s: {self.server}")
        return self

    def _log(self, msg: str) -> None:
        print(f"[controlplane] {msg}", file=sys.stderr, flush=True)

    def _address_flags(self) -> list[str]:
        if not self.advertise_address:
            return [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
            ]
        return [
            "--bind-address=0.0.0.0",
            f"--advertise-address={self.advertise_address}",
            "--endpoint-reconciler-type=lease",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={self.pki / 'admin.crt'}",
            f"--kubelet-client-key={self.pki / 'admin.key'}",
        ]

    def _start_all(self, etcd: str, timeout: float) -> None:
        b = self.bin_dir
        etcd_port, peer_port, api_port, kwok_port = (free_port() for _ in range(4))
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._log("starting etcd")
        self._spawn(
            "etcd",
            [
                etcd,
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--listen-metrics-urls=",
                "--quota-backend-bytes=2147483648",
                "--snapshot-count=100000",
            ],
        )
        self._wait(
            "etcd",
            lambda: urllib.request.urlopen(f"{etcd_url}/health", timeout=2).status == 200,
            timeout,
        )

        pki = self.pki
        self.server = f"https://127.0.0.1:{api_port}"
        self._log("starting kube-apiserver")
        self._spawn(
            "kube-apiserver",
            [
                str(b / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                *self._address_flags(),
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        (self.kubeconfig).write_text(kubeconfig_text(self.server, pki))
        self._wait("kube-apiserver", lambda: self.api_get("/readyz")[0] == 200, timeout)

        kc = str(self.kubeconfig)
        self._log("starting kube-controller-manager, kube-scheduler, kwok")
        self._spawn(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-gc-syncs=20",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(b / "kube-scheduler"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self._spawn(
            "kwok",
            [
                str(b / "kwok"),
                f"--kubeconfig={kc}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=10.0.0.1",
                f"--cidr={POD_CIDR}",
                f"--server-address=127.0.0.1:{kwok_port}",
                "--enable-crds=",
                "--node-lease-duration-seconds=40",
            ],
        )
        created = self.kubectl("apply", "-f", "-", input=json.dumps(NODE_MANIFEST))
        if created.returncode != 0:
            raise ControlPlaneError(f"creating node {NODE_NAME}: {created.stderr}")

        def node_ready() -> bool:
            # Ready, and the node-lifecycle controller has lifted the not-ready taint.
            node = json.loads(self.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
            return ready and not node["spec"].get("taints")

        def default_sa() -> bool:
            return self.kubectl("get", "serviceaccount", "default", "-n", "default").returncode == 0

        self._wait("kwok", node_ready, timeout)
        self._wait("kube-controller-manager", default_sa, timeout)

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left; wait for all of them."""
        for proc in reversed(self._procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs.clear()

    def to_state(self) -> dict[str, object]:
        return {
            "workdir": str(self.workdir),
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "components": [c.__dict__ for c in self.components],
        }


# --- command line: make cluster / make cluster-down ---------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    state_file = STATE_DIR / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if all(alive(c["pid"]) for c in state["components"]):
            print(f"already running: export KUBECONFIG={state['kubeconfig']}")
            return 0
        cmd_down(args)
    ensure_tools()
    STATE_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="channelapp-cluster-"))
    plane = ControlPlane(workdir)
    plane.start()
    state_file.write_text(json.dumps(plane.to_state(), indent=2))
    link = STATE_DIR / "kubeconfig"
    link.unlink(missing_ok=True)
    shutil.copy(plane.kubeconfig, link)
    print(f"control plane running at {plane.server}; logs in {workdir / 'logs'}")
    print(f"kubectl: {plane.kubectl_path}   helm: {plane.bin_dir / 'helm'}")
    print(f"export KUBECONFIG={link}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        print("no control plane is running")
        return 0
    state = json.loads(state_file.read_text())
    stop_pids([c["pid"] for c in state["components"]])
    shutil.rmtree(state["workdir"], ignore_errors=True)
    state_file.unlink()
    (STATE_DIR / "kubeconfig").unlink(missing_ok=True)
    print("control plane stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        print("no control plane is running")
        return 1
    state = json.loads(state_file.read_text())
    for c in state["components"]:
        print(f"{c['name']:<24} pid {c['pid']:<8} {'running' if alive(c['pid']) else 'STOPPED'}")
    print(f"export KUBECONFIG={STATE_DIR / 'kubeconfig'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.controlplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build the tools if needed and start a control plane")
    sub.add_parser("down", help="stop the control plane and remove its data")
    sub.add_parser("status", help="show the control plane's processes")
    args = parser.parse_args(argv)
    return {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command](args)


def start_for_tests() -> ControlPlane:
    """Start a control plane in a temp dir that is stopped at interpreter exit at the latest."""
    ensure_tools()
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="channelapp-cluster-")))
    atexit.register(stop_and_remove, plane)
    return plane.start()


def stop_and_remove(plane: ControlPlane) -> None:
    """A test run leaves nothing behind: the processes stopped, then their data removed."""
    plane.stop()
    shutil.rmtree(plane.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
