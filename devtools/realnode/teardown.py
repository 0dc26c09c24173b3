"""What a stopped real node must not leave behind: finding it (:func:`leftovers`) and removing
it (:func:`clean_host`): processes, mounts, network, cgroups, state directories."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from devtools.paths import bin_dir
from devtools.realnode import network
from devtools.realnode.common import (
    CGROUP_ROOT,
    CNI_STATE,
    CONTAINERD_SOCKET,
    KUBELET_ROOT,
    NODE_TOOLS,
    RUN,
    STATE,
    run,
)


def _pids_whose_cmdline(match: object) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if match(proc.joinpath("cmdline").read_bytes()):  # type: ignore[operator]
                out.append(int(proc.name))
    return out


def shim_pids() -> list[int]:
    """containerd shims of our containerd: they carry its socket address on their command line."""
    address = str(CONTAINERD_SOCKET).encode()
    return _pids_whose_cmdline(lambda cmd: b"containerd-shim" in cmd and address in cmd)


def node_pids() -> list[int]:
    """kubelet, kube-proxy, CoreDNS of the cache and a containerd with our configuration."""
    marks = [str(bin_dir() / t).encode() for t in NODE_TOOLS] + [
        str(STATE / "containerd.toml").encode()
    ]
    return _pids_whose_cmdline(
        lambda cmd: any(cmd.startswith(m) or m in cmd.split(b"\0") for m in marks)
    )


def kubepods_pids() -> list[int]:
    out: set[int] = set()
    for procs in CGROUP_ROOT.glob("*/kubepods*/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            out.update(int(p) for p in procs.read_text().split())
    return sorted(out)


def mounts() -> list[str]:
    prefixes = (str(KUBELET_ROOT), str(STATE), str(RUN), "/run/netns/cni-", "/var/run/netns/cni-")
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefixes):
            out.append(target)
    return out


def cgroups() -> list[str]:
    return sorted(str(p) for p in CGROUP_ROOT.glob("*/kubepods*"))


def leftovers() -> list[str]:
    """Everything a stopped real node must not leave behind, one line per thing found."""
    found = [f"process {p} (node component)" for p in node_pids()]
    found += [f"process {p} (containerd shim)" for p in shim_pids()]
    found += [f"process {p} (in a kubepods cgroup)" for p in kubepods_pids()]
    found += [f"mount {m}" for m in mounts()]
    found += [f"netns {n}" for n in network.netns()]
    found += [f"link {v}" for v in network.links()]
    found += [f"iptables chain {c}" for c in network.chains()]
    found += [f"cgroup {c}" for c in cgroups()]
    found += [f"directory {d}" for d in (KUBELET_ROOT, RUN, CNI_STATE) if d.exists()]
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


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
        pids = shim_pids() + kubepods_pids()
        if not pids:
            break
        _kill(pids)
        time.sleep(0.5)
    for target in sorted(mounts(), key=lambda m: -m.count("/")):
        run("umount", "-l", target, check=False)
    network.tear_down(ip_forward)
    _remove_cgroups()
    for d in (KUBELET_ROOT, RUN, CNI_STATE, STATE / "kubelet-pki", STATE / "pki"):
        shutil.rmtree(d, ignore_errors=True)
