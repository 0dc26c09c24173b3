"""The autoscaling loop closed over real worker pods draining a real queue.

The jobs example (each job holds a consumer slot for JOB_MS) on managed Redis: a surge that one
worker would take long to drain scales the workers out; real pods drain it; a steady trickle
then keeps jobs in flight while the operator scales back in. Every job is counted: each one
sent gets its reply, none is lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.realnode_fixtures import RealCluster, apply_and_wait_ready
from tests.support.realnode_jobs import (
    JOB_MS,
    MAX_WORKERS,
    NAMESPACE,
    SURGE,
    jobs_app,
    load,
    sampler,
    shard_urls,
)

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.redis]


def test_real_workers_scale_out_drain_and_scale_in_losing_nothing(
    real_cluster: RealCluster, real_operator: Any
) -> None:
    ready_in = apply_and_wait_ready(real_cluster, NAMESPACE, jobs_app(real_cluster))
    urls, password = shard_urls(real_cluster)
    replicas, thread = sampler(real_cluster)
    try:
        result = asyncio.run(load(urls, password))
    finally:
        replicas.stop.set()
        thread.join(timeout=10)
    surge_at = result["surge_at"]
    patched = replicas.first(lambda r, ok: r == MAX_WORKERS, surge_at)
    all_ready = replicas.first(lambda r, ok: ok == MAX_WORKERS, surge_at)
    scaled_in = replicas.first(lambda r, ok: r < MAX_WORKERS, patched or surge_at)
    assert patched is not None, replicas.samples[-20:]
    assert all_ready is not None, replicas.samples[-20:]
    assert scaled_in is not None and scaled_in < result["trickle_until"], (
        "no scale-in while jobs were in flight",
        replicas.samples[-40:],
    )
    missing = sorted(set(range(result["sent"])) - set(result["got"]))
    duplicates = sorted(n for n, c in result["got"].items() if c > 1)
    assert missing == [], f"{len(missing)} of {result['sent']} jobs lost: {missing[:20]}"
    print(
        f"\njobs app Ready in {ready_in:.1f}s; surge of {SURGE} x {JOB_MS} ms jobs: "
        f"replicas patched to {MAX_WORKERS} after {patched - surge_at:.1f}s, pods Ready after "
        f"{all_ready - surge_at:.1f}s, queue drained after {result['drained_at'] - surge_at:.1f}s; "
        f"scale-in {scaled_in - result['drained_at']:.1f}s after the drain with jobs in flight; "
        f"{result['sent']} jobs sent, 0 lost, {len(duplicates)} handled twice"
    )
