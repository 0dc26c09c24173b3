"""The autoscaling loop closed over real worker pods draining a real queue.

The jobs example (each job holds a consumer slot for JOB_MS) on managed Redis: a surge that one
worker would take long to drain scales the workers out; real pods drain it; a steady trickle
then keeps jobs in flight while the operator scales back in. Every job is counted: each one
sent gets its reply, none is lost.
"""

from __future__ import annotations

from typing import Any

import pytest

from devtools.realnode.bringup import RealCluster
from devtools.realnode.jobs import JOB_MS, MAX_WORKERS, NAMESPACE, SURGE, run_surge

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.redis]


def test_real_workers_scale_out_drain_and_scale_in_losing_nothing(
    real_cluster: RealCluster, real_operator: Any
) -> None:
    try:
        run = run_surge(real_cluster)
    finally:
        # Its workers and shards would only add noise to the tests after it.
        real_cluster.kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
    patched, all_ready, scaled_in = run.patched, run.all_ready, run.scaled_in
    assert patched is not None, run.samples[-20:]
    assert all_ready is not None, run.samples[-20:]
    assert scaled_in is not None and scaled_in < run.trickle_until, (
        "no scale-in while jobs were in flight",
        run.samples[-40:],
    )
    missing = run.missing
    assert missing == [], f"{len(missing)} of {run.sent} jobs lost: {missing[:20]}"
    print(
        f"\njobs app Ready in {run.ready_in:.1f}s; surge of {SURGE} x {JOB_MS} ms jobs: "
        f"replicas patched to {MAX_WORKERS} after {patched - run.surge_at:.1f}s, pods Ready after "
        f"{all_ready - run.surge_at:.1f}s, queue drained after {run.drained_at - run.surge_at:.1f}s; "
        f"scale-in {scaled_in - run.drained_at:.1f}s after the drain with jobs in flight; "
        f"{run.sent} jobs sent, 0 lost, {len(run.duplicates)} handled twice"
    )
