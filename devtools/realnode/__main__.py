"""The real node's command line: ``python -m devtools.realnode up|down|check``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from devtools.controlplane import ControlPlane
from devtools.procs import alive, stop_pids
from devtools.realnode.common import BRIDGE_IP, NODE, STATE_FILE
from devtools.realnode.images import build_images, build_node_tools, missing_tools
from devtools.realnode.node import RealNode
from devtools.realnode.teardown import clean_host, leftovers

PROG = "python -m devtools.realnode"


def cmd_up(args: argparse.Namespace) -> int:
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        pids = [*state["node"].values(), *(c["pid"] for c in state["plane"]["components"])]
        if all(alive(pid) for pid in pids):
            print(f"real node {NODE} already up")
            print(f"export KUBECONFIG={STATE_FILE.parent / 'kubeconfig'}")
            return 0
        print(f"a real node was started here and part of it stopped: {PROG} down")
        return 1
    if missing_tools():
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
        node.remove_containers()
        stop_pids([node.pids["containerd"]])
        stop_pids([c["pid"] for c in state["plane"]["components"]])
        shutil.rmtree(state["plane"]["workdir"], ignore_errors=True)
        clean_host(state["ip_forward"])
        STATE_FILE.unlink()
        (STATE_FILE.parent / "kubeconfig").unlink(missing_ok=True)
    elif args.force:
        clean_host()
    else:
        if leftovers():
            print(
                "no real node was started here, yet its traces are: remove them with "
                f"{PROG} down --force (it removes /var/lib/kubelet)"
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
    parser = argparse.ArgumentParser(
        prog=PROG, description=(sys.modules["devtools.realnode"].__doc__ or "")
    )
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


if __name__ == "__main__":
    sys.exit(main())
