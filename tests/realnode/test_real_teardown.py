"""Stopping the real node leaves no process, mount, netns, veth, iptables chain or cgroup."""

from __future__ import annotations

import json

import pytest

from devtools import realnode
from devtools.realnode.bringup import RealCluster

pytestmark = [pytest.mark.realnode, pytest.mark.cluster]

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper", "namespace": "default"},
    "spec": {
        "containers": [
            {
                "name": "sleeper",
                "image": "",
                "command": ["sh", "-c", "sleep 3600"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 30,
    },
}


def test_stop_leaves_nothing_behind(real_cluster: RealCluster) -> None:
    kube = real_cluster.kube
    pod = json.loads(json.dumps(POD))
    pod["spec"]["containers"][0]["image"] = real_cluster.image("redis")
    kube.kubectl("apply", "-f", "-", input=json.dumps(pod))
    kube.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s")
    # While it runs, every kind of trace is there to be found: the check can see them.
    up = realnode.leftovers()
    for kind in ("process", "mount", "netns", "link", "iptables chain", "cgroup", "directory"):
        assert any(line.startswith(kind) for line in up), (kind, up)

    real_cluster.node.stop()
    assert realnode.leftovers() == []
