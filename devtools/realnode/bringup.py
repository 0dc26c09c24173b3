"""Bring-up: a control plane with a real node joined and the project's images on it.

:func:`start_for_tests` starts both (stopped at interpreter exit at the latest);
:func:`started_real_cluster` builds what is missing first (hack/cluster/build-node.sh,
hack/images/build.sh; both cached) and gives a :class:`RealCluster`, stopped on leaving.
"""

from __future__ import annotations

import atexit
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.controlplane import ControlPlane, ensure_tools, stop_and_remove
from devtools.kube import KubeCluster
from devtools.realnode.common import BRIDGE_IP
from devtools.realnode.images import Image, build_images, build_node_tools, missing_tools
from devtools.realnode.node import RealNode


def start_for_tests(images: dict[str, Image]) -> tuple[ControlPlane, RealNode]:
    """A control plane and a real node, stopped at interpreter exit at the latest."""
    plane = ControlPlane(
        Path(tempfile.mkdtemp(prefix="channelapp-cluster-")), advertise_address=BRIDGE_IP
    )
    plane.start()
    node = RealNode(plane)
    atexit.register(stop_and_remove, plane)
    atexit.register(node.stop)
    try:
        node.start(images)
    except BaseException:
        stop_and_remove(plane)
        raise
    return plane, node


@dataclass
class RealCluster:
    kube: KubeCluster
    node: RealNode
    images: dict[str, Image]

    def image(self, name: str) -> str:
        return self.images[name].ref


@contextlib.contextmanager
def started_real_cluster() -> Iterator[RealCluster]:
    """The control plane with a real node joined, the project's images on it; stopped after."""
    ensure_tools()
    if any("build-node.sh" in m for m in missing_tools()):
        build_node_tools()
    images = build_images()
    plane, node = start_for_tests(images)
    kube = KubeCluster.for_plane(plane)
    try:
        yield RealCluster(kube, node, images)
    finally:
        node.stop()
        stop_and_remove(plane)
