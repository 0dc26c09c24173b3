"""Two operator replicas sharing a peering: one acts, the other takes over when it dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from channelapp.layer.keyspace import app_prefix

from tests.operator.test_autoscaling import apply_app, push, shards, worker_replicas
from tests.support.cluster_fixtures import KubeCluster
from tests.support.operator_fixtures import ROOT, OperatorProcess
from tests.support.polling import wait_for
from tests.support.redis_fixtures import RedisServer

pytestmark = [pytest.mark.cluster, pytest.mark.redis]
__all__ = ["shards"]  # the fixture, shared with the autoscaling tests

PEERING_CRDS = ROOT / "charts" / "channelapp-operator" / "crds" / "kopf-peerings.yaml"
LIFETIME = 10  # the default of --peering-lifetime


def acting(op: OperatorProcess) -> bool:
    """Whether kopf's last word on peering in this replica's log was to resume."""
    said = [
        line for line in op.log().splitlines()
        if "Resuming operations" in line or "Pausing operations" in line
    ]  # fmt: skip
    return bool(said) and "Resuming operations" in said[-1]


def test_standby_replica_takes_over_scaling_within_the_peering_lifetime(
    kube_cluster: KubeCluster,
    namespace: str,
    channelapp_crd: str,
    shards: list[RedisServer],
    tmp_path: Path,
    record_property: Any,
) -> None:
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input="apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {name: ha}\n",
    )  # fmt: skip
    replicas = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        args = ["--namespace", namespace, "--peering=ha", f"--peering-lifetime={LIFETIME}"]
        replicas.append(OperatorProcess(kube_cluster, namespace, tmp_path / str(i), args=args))
    try:
        for op in replicas:
            op.start()

        # Random priorities differ: one replica acts, the other pauses behind it (a replica
        # starts paused; the first may act alone until it sees the second's record).
        def active_ones() -> list[OperatorProcess]:
            return [op for op in replicas if acting(op)]

        wait_for(lambda: len(active_ones()) == 1, 30, what="one active replica")
        time.sleep(3)
        (active,) = active_ones()
        (standby,) = [op for op in replicas if op is not active]
        peers = kube_cluster.kubectl_json("get", "kopfpeering", "ha", "-n", namespace)["status"]
        assert {p["lifetime"] for p in peers.values()} == {LIFETIME}, peers

        name = apply_app(
            kube_cluster, namespace, shards, minReplicas=0, maxReplicas=5,
            targetQueueDepth=10, pollIntervalSeconds=0.25, channels=[],
        )  # fmt: skip
        wait_for(lambda: worker_replicas(kube_cluster, namespace, name) == 0, 30, what="0")
        assert "supervising" in active.log() and "supervising" not in standby.log()

        # The active replica dies without a word (node loss); work arrives at once.
        assert active.proc is not None
        os.killpg(active.proc.pid, signal.SIGKILL)
        active.proc.wait()
        killed = time.monotonic()
        push(shards, app_prefix(namespace, name), "http.request", 20)
        wait_for(
            lambda: worker_replicas(kube_cluster, namespace, name) >= 1,
            LIFETIME + 30,
            what="the standby scales the workers",
        )
        gap = time.monotonic() - killed
        record_property("takeover_gap_seconds", round(gap, 2))
        print(f"scaling resumed {gap:.1f} s after the active replica was killed")
        assert acting(standby)
        assert gap < LIFETIME + 15
    finally:
        for op in replicas:
            op.stop()
