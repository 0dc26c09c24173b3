"""Signals: from successive layer reads to arrival rate, handling time and live capacity (pure)."""

from __future__ import annotations

from channelapp.autoscale.signals import LoadTracker, Sample
from channelapp.layer.base import WorkerReport


def report(handled: int, busy: float, in_flight: int = 0, concurrency: int = 1) -> WorkerReport:
    return {
        "in_flight": in_flight,
        "handled": handled,
        "busy_seconds": busy,
        "concurrency": concurrency,
    }


def test_first_sample_knows_no_rates() -> None:
    load = LoadTracker().observe(Sample(0.0, 3, 0.2, 100, {"a": report(10, 0.5, 2)}))
    assert load.arrival_rate is None and load.handling_time is None
    assert (load.depth, load.in_flight, load.workers, load.concurrency) == (3, 2, 1, 1)


def test_rates_come_from_the_counters_over_the_window() -> None:
    tracker = LoadTracker(window=2.0)
    for i in range(9):  # 100 msg/s arriving, each worker handling 50/s at 20 ms each
        t = i * 0.5
        workers = {w: report(int(50 * t), 50 * t * 0.02, 1) for w in ("a", "b")}
        load = tracker.observe(Sample(t, 0, 0.0, int(100 * t), workers))
    assert load.arrival_rate == 100.0
    assert load.handling_time is not None and abs(load.handling_time - 0.02) < 1e-9
    assert len(tracker.samples) <= 6  # only what the window needs is kept


def test_a_restarted_worker_does_not_count_its_reset_counters() -> None:
    tracker = LoadTracker(window=1.0)
    tracker.observe(Sample(0.0, 0, 0.0, 0, {"old": report(1000, 50.0)}))
    load = tracker.observe(Sample(1.0, 0, 0.0, 10, {"new": report(10, 1.0)}))
    assert load.handling_time is None  # no worker in both samples: nothing measured yet
    load = tracker.observe(Sample(2.0, 0, 0.0, 20, {"new": report(20, 2.0)}))
    assert load.handling_time == 0.1


def test_a_worker_whose_report_expired_stops_counting() -> None:
    tracker = LoadTracker()
    two = {"a": report(0, 0.0, 5, 8), "b": report(0, 0.0, 5, 8)}
    assert tracker.observe(Sample(0.0, 0, 0.0, 0, two)).in_flight == 10
    load = tracker.observe(Sample(1.0, 0, 0.0, 0, {"a": two["a"]}))
    assert (load.in_flight, load.workers) == (5, 1)


def test_counters_going_backwards_start_the_rates_over() -> None:
    tracker = LoadTracker()
    tracker.observe(Sample(0.0, 0, 0.0, 5000, {}))
    load = tracker.observe(Sample(1.0, 0, 0.0, 10, {}))  # a restarted Redis lost the counters
    assert load.arrival_rate is None
    assert tracker.observe(Sample(2.0, 0, 0.0, 60, {})).arrival_rate == 50.0


def test_workers_that_start_after_the_first_read_are_measured() -> None:
    """The base sample of the window predates the workers: each is compared with itself."""
    tracker = LoadTracker(window=30.0)
    tracker.observe(Sample(0.0, 5, 0.1, 5, {}))
    tracker.observe(Sample(0.5, 0, 0.0, 10, {"a": report(0, 0.0)}))
    load = tracker.observe(Sample(1.0, 0, 0.0, 20, {"a": report(10, 0.5)}))
    assert load.handling_time == 0.05


def test_a_woken_app_forgets_the_old_handling_time() -> None:
    """No live worker (asleep at zero, or pods not started): the depth rule stands in again."""
    tracker = LoadTracker()
    tracker.observe(Sample(0.0, 0, 0.0, 0, {"a": report(0, 0.0)}))
    assert tracker.observe(Sample(1.0, 0, 0.0, 10, {"a": report(10, 1.0)})).handling_time == 0.1
    assert tracker.observe(Sample(2.0, 3, 0.0, 13, {})).handling_time is None


def rate_after(tracker: LoadTracker, counts: list[int], step: float = 0.5) -> float | None:
    load = None
    sent = 0
    for i, n in enumerate(counts):
        sent += n
        load = tracker.observe(Sample(i * step, 0, 0.0, sent, {}))
    assert load is not None
    return load.arrival_rate


def test_a_step_up_in_arrivals_shows_within_two_seconds() -> None:
    tracker = LoadTracker()
    rate = rate_after(tracker, [50] * 60 + [150] * 5)  # 100/s for 30 s, then 300/s
    assert rate is not None and rate > 250, rate


def test_a_one_off_burst_does_not_read_as_a_higher_rate() -> None:
    """400 at once on 100/s is a backlog, not a step: the stable rate moves by 400 / 30 s."""
    tracker = LoadTracker()
    rate = rate_after(tracker, [50] * 60 + [450] + [50] * 4)
    assert rate is not None and rate < 120, rate


def test_random_arrivals_do_not_read_as_a_surge() -> None:
    import random

    rng = random.Random(3)
    tracker = LoadTracker()
    counts = [sum(rng.random() < 0.1 for _ in range(50)) for _ in range(600)]  # 10/s, binomial
    sent = 0
    for i, n in enumerate(counts):
        sent += n
        load = tracker.observe(Sample(i * 0.5, 0, 0.0, sent, {}))
        if i > 60:
            assert load.arrival_rate is not None and load.arrival_rate < 14, (i, load)
