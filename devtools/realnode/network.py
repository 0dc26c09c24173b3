"""The pods' network on this machine: the bridge, forwarding, the egress drop, and their removal.

The CNI ``bridge`` plugin puts each pod on ``cni0`` (10.88.0.0/16, a route only to the service
range); a FORWARD rule drops pod traffic towards the outside interface; kube-proxy's ``KUBE-*``
chains carry Services.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
from pathlib import Path

from devtools.realnode.common import BRIDGE, BRIDGE_IP, EGRESS_CHAIN, POD_CIDR, run

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")


def outside_interface() -> str:
    routes = json.loads(run("ip", "-j", "route", "show", "default").stdout or "[]")
    return routes[0]["dev"] if routes else "eth0"


def pod_network_taken() -> str | None:
    """Another interface that holds a route for the pod network (not the node's bridge)."""
    routes = json.loads(run("ip", "-j", "route", "show", POD_CIDR).stdout or "[]")
    for route in routes:
        if route.get("dev") != BRIDGE:
            return str(route.get("dev"))
    return None


PODMAN_BRIDGES = ("cni-podman0", "podman0")


def release_idle_podman_bridge(name: str) -> bool:
    """Delete podman's default bridge when no container is on it (podman makes it again on use).

    ``podman build``/``podman run`` without ``--network=host`` leave it behind holding the same
    10.88.0.0/16 route the node's pods use.
    """
    if name not in PODMAN_BRIDGES:
        return False
    found = json.loads(run("ip", "-j", "link", "show", check=False).stdout or "[]")
    if any(link.get("master") == name for link in found):
        return False
    run("ip", "link", "delete", name, check=False)
    return pod_network_taken() is None


def ip_forward() -> str:
    return IP_FORWARD.read_text().strip()


def set_up() -> None:
    """Forwarding on, the bridge up, the egress drop in place."""
    IP_FORWARD.write_text("1\n")
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if bridge_nf.exists():
        bridge_nf.write_text("1\n")
    # The bridge exists before the first pod so the API server can advertise its address.
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{BRIDGE_IP}/16", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    out = outside_interface()
    run("iptables", "-w", "-N", EGRESS_CHAIN)
    run("iptables", "-w", "-A", EGRESS_CHAIN, "-s", POD_CIDR, "-o", out, "-j", "DROP")
    run("iptables", "-w", "-I", "FORWARD", "1", "-j", EGRESS_CHAIN)


def kube_proxy_synced() -> bool:
    return "KUBE-SERVICES" in run("iptables", "-w", "-t", "nat", "-S").stdout


def netns() -> list[str]:
    return (
        sorted(p.name for p in Path("/run/netns").glob("cni-*"))
        if Path("/run/netns").exists()
        else []
    )


def links() -> list[str]:
    """The bridge and the veths on it."""
    found = json.loads(run("ip", "-j", "link", "show", check=False).stdout or "[]")
    return [
        link["ifname"] for link in found if link["ifname"] == BRIDGE or link.get("master") == BRIDGE
    ]


def _ours(chain: str) -> bool:
    return chain.startswith("KUBE-") or chain == EGRESS_CHAIN


def chains() -> list[str]:
    out = []
    for tool in IPTABLES:
        if not shutil.which(tool):
            continue
        for table in TABLES:
            rules = run(tool, "-w", "-t", table, "-S", check=False).stdout
            for line in rules.splitlines():
                parts = line.split()
                if parts[:1] == ["-N"] and _ours(parts[1]):
                    out.append(f"{tool} {table} {parts[1]}")
    return out


def clean_iptables() -> None:
    """Drop the KUBE-* chains and ours, with every rule that jumps to them, table by table."""
    for tool in IPTABLES:
        if not shutil.which(tool):
            continue
        for table in TABLES:
            rules = run(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines()
            ours = {r.split()[1] for r in rules if r.startswith("-N ") and _ours(r.split()[1])}
            if not ours:
                continue
            for rule in rules:
                parts = shlex.split(rule)  # comments are quoted
                if parts[:1] == ["-A"] and parts[1] not in ours and any(c in parts for c in ours):
                    run(tool, "-w", "-t", table, "-D", *parts[1:], check=False)
            for chain in ours:
                run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in ours:
                run(tool, "-w", "-t", table, "-X", chain, check=False)


def tear_down(forward: str | None = None) -> None:
    """Network namespaces, veths, the bridge, the iptables chains; ip_forward back if given."""
    for ns in netns():
        run("ip", "netns", "delete", ns, check=False)
    for link in links():
        if link != BRIDGE:
            run("ip", "link", "delete", link, check=False)
    if BRIDGE in links():
        run("ip", "link", "delete", BRIDGE, check=False)
    clean_iptables()
    if forward is not None:
        with contextlib.suppress(OSError):
            IP_FORWARD.write_text(f"{forward}\n")
