"""Pytest fixtures of the real-node tier: a control plane with a real node, the operator installed
by helm from its own image, and the chat example running on real pods.

``real_cluster`` (session) builds what is missing (hack/cluster/build-node.sh, hack/images/build.sh;
both cached) and starts :mod:`devtools.realnode`; a missing tool fails the tier, it never
skips. ``real_operator`` helm-installs charts/channelapp-operator with the operator image
(:func:`devtools.realnode.workloads.install_operator`); ``chat_app`` applies examples/chat.yaml
with the app and Redis images.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.kube import KubeCluster
from devtools.realnode.bringup import RealCluster, started_real_cluster
from devtools.realnode.workloads import (
    CHAT_NAMESPACE,
    apply_and_wait_ready,
    example_with_test_images,
    install_operator,
)


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    with started_real_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def real_operator(real_cluster: RealCluster) -> KubeCluster:
    return install_operator(real_cluster)


@pytest.fixture(scope="session")
def chat_app(real_cluster: RealCluster, real_operator: KubeCluster) -> dict[str, Any]:
    """examples/chat.yaml (2 protocol servers, managed Redis with 2 shards) Ready on real pods.

    Its shards are single pods (``replicas: 0``): the failure tests take a shard away by
    deleting its pod. Replicated shards and their failover have their own app
    (tests/realnode/test_redis_failover.py), and ``make deploy`` runs the example as written.
    """
    doc = example_with_test_images(real_cluster)
    doc["spec"]["redis"]["managed"]["replicas"] = 0
    seconds = apply_and_wait_ready(real_cluster, CHAT_NAMESPACE, doc)
    print(f"\nchat example Ready on real pods in {seconds:.1f}s")
    return doc
