"""The node's parts and images: what is missing, building them (cached), importing into containerd."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.paths import bin_dir, cache_dir
from devtools.realnode.common import (
    CNI_BIN,
    HOST_TOOLS,
    IMAGES_SCRIPT,
    NODE_SCRIPT,
    NODE_TOOLS,
    ctr,
)


@dataclass
class Image:
    name: str
    ref: str
    archive: Path


def pause_archive() -> Path:
    # The archive names itself registry.k8s.io/pause:3.10 (hack/cluster/build-node.sh).
    return cache_dir() / "images" / "pause.oci.tar"


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
    if not pause_archive().exists():
        out.append(f"{pause_archive()} (bash hack/cluster/build-node.sh)")
    return out


def build_node_tools() -> None:
    subprocess.run(["bash", str(NODE_SCRIPT)], check=True, stdout=subprocess.DEVNULL)


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


def import_images(images: dict[str, Image]) -> None:
    """Import the pause image and the project's images into the node's running containerd."""
    t0 = time.monotonic()
    ctr("images", "import", str(pause_archive()))
    for image in images.values():
        if image.name != "base":
            ctr("images", "import", str(image.archive), timeout=300)
    # Earlier builds of the project's images go: the store is a cache of the current ones.
    current = {i.ref for i in images.values()}
    for ref in ctr("images", "ls", "-q").split():
        if ref.startswith("localhost/channelapp/") and ref not in current:
            ctr("images", "rm", ref, check=False)
    print(
        f"[realnode] images imported in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True
    )
