"""The operator's liveness heartbeat and the per-app series (pure, no cluster)."""

from __future__ import annotations

import time

from channelapp_operator import metrics


def test_no_loops_means_alive() -> None:
    beat = metrics.Heartbeat(max_silence=0.05)
    time.sleep(0.1)
    assert beat.alive()  # an operator with no apps has nothing that can stall


def test_a_silent_loop_fails_liveness_until_it_beats_or_ends() -> None:
    beat = metrics.Heartbeat(max_silence=0.05)
    beat.beat("supervise ns/a")
    beat.beat("supervise ns/b")
    assert beat.alive()
    time.sleep(0.1)
    beat.beat("supervise ns/b")
    assert not beat.alive() and beat.stalled() == ["supervise ns/a"]
    beat.done("supervise ns/a")
    assert beat.alive()


def test_forget_drops_every_series_of_the_app() -> None:
    labels = ("ns-forget", "gone")
    metrics.QUEUE_DEPTH.labels(*labels).set(3)
    metrics.DEPTH_READ_FAILURES.labels(*labels).inc()
    metrics.SCALE_DECISIONS.labels(*labels, "up").inc()
    metrics.DRIFT_CORRECTIONS.labels(*labels, "Service").inc()
    metrics.STATUS_WRITES.labels(*labels).inc()
    metrics.forget(*labels)
    from prometheus_client import REGISTRY, generate_latest

    assert 'app="gone"' not in generate_latest(REGISTRY).decode()
