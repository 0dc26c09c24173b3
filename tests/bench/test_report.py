"""bench.report draws what the benchmarks measured: a real (short) layer run against a real
redis-server and a real (short) queue-model run, saved by bench.results, then rendered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import autoscale_steady
from bench.queue_model import simulate
from bench.report import render
from bench.results import load_all, save
from devtools.paths import REPO

pytestmark = pytest.mark.redis


def test_a_layer_run_becomes_a_chart_and_a_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "bench.layer", "--messages", "2000", "--baseline-messages", "400",
         "--pairs", "4,1"],
        cwd=REPO, env={**os.environ, "CHANNELAPP_BENCH_RESULTS": str(data)},
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    saved = json.loads((data / "layer.json").read_text())
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
    assert text.count("Not run yet.") == 4


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
