"""podman's idle default bridge holds the pods' route; the node removes it, never a busy one.

``podman build``/``podman run`` without ``--network=host`` leave ``cni-podman0`` with
10.88.0.0/16 behind, and the node would refuse to start. Real links on this machine (root).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from devtools.realnode import network

pytestmark = [pytest.mark.realnode]

PODMAN = "cni-podman0"
MEMBER = "chapp-test-v0"
PEER = "chapp-test-v1"


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check)


def _exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


@pytest.fixture
def podman_bridge() -> Iterator[str]:
    _ip("link", "delete", MEMBER, check=False)
    _ip("link", "delete", PODMAN, check=False)
    _ip("link", "add", PODMAN, "type", "bridge")
    yield PODMAN
    _ip("link", "delete", MEMBER, check=False)
    _ip("link", "delete", PODMAN, check=False)


def test_an_idle_podman_bridge_is_removed(podman_bridge: str) -> None:
    assert network.release_idle_podman_bridge(podman_bridge)
    assert not _exists(podman_bridge)


def test_a_podman_bridge_with_a_container_on_it_stays(podman_bridge: str) -> None:
    _ip("link", "add", MEMBER, "type", "veth", "peer", "name", PEER)
    _ip("link", "set", MEMBER, "master", podman_bridge)
    assert not network.release_idle_podman_bridge(podman_bridge)
    assert _exists(podman_bridge)


def test_any_other_interface_is_never_touched() -> None:
    _ip("link", "delete", MEMBER, check=False)
    _ip("link", "add", MEMBER, "type", "veth", "peer", "name", PEER)
    try:
        assert not network.release_idle_podman_bridge(MEMBER)
        assert _exists(MEMBER)
    finally:
        _ip("link", "delete", MEMBER, check=False)
