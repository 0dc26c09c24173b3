"""Two operator replicas sharing a peering: one acts, the other takes over when it dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from channelapp.layer.keyspace import app_prefix

from devtools.kube import KubeCluster
from devtools.operator import ROOT, OperatorProcess
from devtools.polling import wait_for
from devtools.redis import RedisServer
from tests.operator.test_autoscaling import apply_app, push, shards, worker_replicas

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
        args = ["--namespace", namespace, "--peering=ha", f"--peering-lifetime={LIFETIME}",
                f"--priority={100 * (i + 1)}"]  # fmt: skip
        replicas.append(OperatorProcess(kube_cluster, namespace, tmp_path / str(i), args=args))
    try:
        for op in replicas:
            op.start()

        # The higher priority acts, the other pauses behind it (a replica starts paused; the
        # first may act alone until it sees the second's record): settled once both records
        # are in the peering object, the higher one acts and the lower one does not.
        standby, active = replicas

        def peers() -> dict[str, Any]:
            found = kube_cluster.kubectl_json("get", "kopfpeering", "ha", "-n", namespace)
            return dict(found.get("status") or {})

        wait_for(
            lambda: len(peers()) == 2 and acting(active) and not acting(standby),
            30,
            what="both records seen, the higher-priority replica alone acting",
        )
        seen = peers()
        assert {p["lifetime"] for p in seen.values()} == {LIFETIME}, seen
        assert sorted(p["priority"] for p in seen.values()) == [100, 200], seen

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
