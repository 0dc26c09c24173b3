"""The real node's processes: containerd (with runc), kubelet, kube-proxy and CoreDNS.

:meth:`RealNode.start` (after the control plane) writes the configuration files
(:mod:`devtools.realnode.configs`), sets up the pods' network (:mod:`devtools.realnode.network`),
starts containerd, imports the images (:mod:`devtools.realnode.images`), then starts kubelet,
kube-proxy and CoreDNS and waits for the node to be Ready. :meth:`RealNode.stop` (before the
control plane) deletes the workloads while kubelet still runs to kill them (pod processes live in
``/kubepods`` cgroups, outside any process group of ours), stops the processes and removes every
trace (:mod:`devtools.realnode.teardown`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.controlplane import NODE_NAME as KWOK_NODE
from devtools.controlplane import ControlPlane
from devtools.procs import stop_pids
from devtools.realnode import configs, network
from devtools.realnode.common import BRIDGE_IP, KUBELET_ROOT, NODE, POD_CIDR, STATE, NodeError, ctr
from devtools.realnode.images import Image, import_images, missing_tools
from devtools.realnode.teardown import clean_host, leftovers


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
        return ctr(*args, check=check, timeout=timeout)

    def start(self, images: dict[str, Image], timeout: float = 120.0) -> RealNode:
        missing = missing_tools()
        if missing:
            raise NodeError("the real node needs: " + "; ".join(missing))
        if leftovers():
            raise NodeError(
                "a previous real node left state behind: python -m devtools.realnode down; "
                + "; ".join(leftovers())
            )
        taken = network.pod_network_taken()
        if taken and network.release_idle_podman_bridge(taken):
            self._log(f"removed {taken}, podman's idle default bridge, which held {POD_CIDR}")
            taken = None
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

    def _start_all(self, timeout: float) -> None:
        kubelet_kc = configs.write_all(self.plane)
        self.ip_forward_was = network.ip_forward()
        network.set_up()

        self._log("starting containerd")
        self._spawn(
            "containerd", [shutil.which("containerd") or "containerd", "--config", str(STATE / "containerd.toml")]
        )  # fmt: skip
        self._wait("containerd", lambda: self.ctr("version", timeout=5) != "", 30)
        import_images(self.images)

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
            network.kube_proxy_synced,
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
            self.remove_containers()
            stop_pids([self.pids["containerd"]])
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
        self._procs.clear()
        self.pids.clear()
        clean_host(self.ip_forward_was)

    def remove_containers(self) -> None:
        with contextlib.suppress(Exception):
            for task in self.ctr("tasks", "ls", "-q", check=False).split():
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", task, check=False)
            time.sleep(1)
            for task in self.ctr("tasks", "ls", "-q", check=False).split():
                self.ctr("tasks", "delete", "-f", task, check=False)
            for c in self.ctr("containers", "ls", "-q", check=False).split():
                self.ctr("containers", "delete", c, check=False)
