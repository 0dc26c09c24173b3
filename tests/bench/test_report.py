"""bench.report draws what the benchmarks measured: a real (short) layer run against a real
redis-server and a real (short) queue-model run, saved by bench.results, then rendered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import autoscale, autoscale_processes, autoscale_steady
from bench.queue_model import simulate
from bench.report import render
from bench.results import load_all, save
from devtools.paths import REPO

pytestmark = pytest.mark.redis


def run_bench(data: Path, bench: str, *args: str) -> dict[str, Any]:
    """A real (short) run of ``python -m bench.<bench>``; what it saved in ``data``."""
    subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", *args],
        cwd=REPO, env={**os.environ, "CHANNELAPP_BENCH_RESULTS": str(data)},
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    saved: dict[str, Any] = json.loads((data / f"{bench}.json").read_text())
    return saved


def test_a_layer_run_becomes_a_chart_and_a_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    saved = run_bench(data, "layer", "--messages", "2000", "--baseline-messages", "400",
                      "--pairs", "4,1")  # fmt: skip
    assert [p["senders"] for p in saved["pairs"]] == [4, 1]
    assert saved["ceiling"]  # redis-benchmark's rates, the ceiling

    page = render(data, tmp_path / "report")
    chart = (tmp_path / "report" / "layer.svg").read_text()
    assert chart.startswith("<?xml") and "<svg" in chart
    text = page.read_text()
    assert "![layer](layer.svg)" in text
    for pair in saved["pairs"]:
        for system, figures in pair["systems"].items():
            row = f"| {pair['senders']} + {pair['receivers']} | {system} | {figures['rate']:,.0f} |"
            assert row in text
    # What did not run is said, not drawn.
    assert text.count("Not run yet.") == 8


def test_an_autoscaling_run_is_drawn_against_the_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANNELAPP_BENCH_RESULTS", str(tmp_path / "data"))
    load = autoscale_steady.Scenario("step 20/s to 60/s at 10 s", lambda t: 20 if t < 10 else 60,
                                     0.05, duration=30.0, change_at=10.0)  # fmt: skip
    runs = {
        name: autoscale_steady.series(
            load, simulate(load.rate, load.handling, make(), duration=load.duration)
        )
        for name, make in autoscale_steady.scalers().items()
    }
    save(
        "autoscale_steady", {"max": 20, "window": 10, "loads": [{"load": load.name, "runs": runs}]}
    )
    stored = load_all()["autoscale_steady"]["loads"][0]["runs"]["demand"]
    assert stored["needed"][0] == 1 and stored["needed"][-1] == 3  # 20/s, then 60/s x 50 ms
    assert len(stored["t"]) < 30 * 4 + 60  # thinned for drawing, each change kept

    page = render(tmp_path / "data", tmp_path / "report")
    assert (tmp_path / "report" / "autoscale_steady_1.svg").read_text().count("<path") > 10
    rows = [line for line in page.read_text().splitlines() if line.startswith(f"| {load.name} |")]
    assert [row.split(" | ")[1] for row in rows] == list(runs)


def test_a_sync_http_run_is_drawn_per_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runs = run_bench(data, "sync_http", "--requests", "40", "--concurrency", "4",
                     "--work-ms", "1")["runs"]  # fmt: skip
    assert {r["system"] for r in runs} >= {
        "daphne + Django, sync def view",
        "channelapp, def, 1 worker",
    }
    assert all(r["failures"] == 0 and r["rate"] > 0 for r in runs)

    text = render(data, tmp_path / "report").read_text()
    assert "![sync_http](sync_http.svg)" in text
    for r in runs:
        assert f"| {r['system']} | {r['rate']:,.0f} | {r['p50'] * 1000:.1f} |" in text


def test_worker_processes_over_time_are_drawn_against_the_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANNELAPP_BENCH_RESULTS", str(tmp_path / "data"))
    # Polls every 0.5 s and answers as bench.autoscale_processes records them: 1 worker
    # scaling to 5, then waits that fall once they run.
    counts = [(i * 0.5, min(5, 1 + i // 4)) for i in range(40)]
    waits = [(t / 10, 0.5 if t < 60 else 0.01) for t in range(200)]
    series = autoscale_processes.series(counts, waits, 5)
    assert series["wait_t"] == list(range(20))
    assert series["wait_p99"][0] == 0.5 and series["wait_p99"][-1] == 0.01
    save(
        "autoscale_processes",
        {
            "max": 10,
            "loads": [{"load": "100 jobs/s", "runs": {"demand": series, "depth-only": series}}],
        },
    )
    text = render(tmp_path / "data", tmp_path / "report").read_text()
    assert (tmp_path / "report" / "autoscale_processes_1.svg").exists()
    assert "| 100 jobs/s | demand |" in text and "| 100 jobs/s | depth-only |" in text


def test_the_operator_benchmarks_are_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drawing of bench.autoscale and bench.operator_scale (both need a control plane and
    minutes: `make bench` runs them), from figures in the shape they save; the KEDA-like
    trace is the model's own."""
    data = tmp_path / "data"
    monkeypatch.setenv("CHANNELAPP_BENCH_RESULTS", str(data))
    keda = autoscale.model_trace(90.0, 450.0)
    assert keda["workers"][0] == 1 and max(keda["workers"]) == autoscale.MAX
    save(
        "autoscale",
        {
            "surge": 400, "target": 10, "max": 40, "window": 30, "up": 0.8, "down": 31.5,
            "keda_up": 52.0, "keda_down": 315.0,
            "needed": {"t": [-10.0, 0.0, 90.0, 450.0], "workers": [1, 40, 1, 1]},
            "systems": {
                "channelapp operator (measured)": {"t": [0, 0.8, 121.5, 450], "workers": [1, 40, 1, 1]},
                "KEDA-like (model, one phase)": keda,
            },
        },
    )  # fmt: skip
    measured = {
        "polls": 0.99, "status_writes": 0.1, "watched_writes": 0.1, "cpu_operator": 27.0,
        "cpu_apiserver": 19.0, "cpu_etcd": 2.0, "rss_operator": 80.0,
        "rss_apiserver": 400.0, "rss_etcd": 200.0,
    }  # fmt: skip
    save(
        "operator_scale",
        {
            "window": 30,
            "runs": [
                {"apps": 200, "operator": "this tree", "load": "idle", **measured},
                {
                    "apps": 200,
                    "operator": "this tree",
                    "load": "busy",
                    **measured,
                    "surge": 0.41,
                },
            ],
        },
    )
    text = render(data, tmp_path / "report").read_text()
    assert (tmp_path / "report" / "autoscale.svg").read_text().count("<path") > 5
    assert "| channelapp operator (measured) | 0.80 | 31.5 |" in text
    assert "| 200 | this tree | busy | 0.99 | 0.100 | 27.0 / 19.0 / 2.0 | 0.41 |" in text
    assert "| 200 | this tree | idle | 0.99 | 0.100 | 27.0 / 19.0 / 2.0 | - |" in text
