"""The benchmarks' latest figures as a page of charts: ``bench/report/README.md`` and one SVG
per chart beside it, drawn with matplotlib from what each benchmark saved (bench.results).

A benchmark that has not run yet is listed as missing; nothing is drawn from a guess.

    python -m bench.report [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.results import REPORT, load_all, results_dir

# One colour per system, the same on every chart.
COLOURS = {
    "channelapp": "#1f6feb",
    "channels_redis": "#d1242f",
    "daphne": "#d1242f",
    "redis-benchmark": "#6e7781",
    "demand": "#1f6feb",
    "depth-only": "#bf8700",
    "KEDA-like": "#d1242f",
}
ORDER = ("channelapp", "demand", "depth-only", "channels_redis", "daphne", "KEDA-like")


def colour(system: str) -> str:
    if system.startswith("channelapp") and "uvloop" in system:
        return "#54aeff"
    for key in ORDER:
        if system.startswith(key):
            if key == "daphne" and "via channels_redis" in system:
                return "#8250df"
            return COLOURS[key]
    return "#6e7781"


def _figure(panels: int, width: float = 5.0) -> tuple[Figure, list[Axes]]:
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, 3.6), squeeze=False)
    return fig, list(axes[0])


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / f"{name}.svg", format="svg")
    plt.close(fig)
    return f"{name}.svg"


def _bars(ax: Axes, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    """Grouped bars: one group per x label, one bar per system, its value written on it."""
    width = 0.8 / max(1, len(series))
    for i, (system, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, values, width, label=system, color=colour(system))
        ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _short(v: float) -> str:
    if math.isnan(v):
        return "-"
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def layer(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    pairs = data["pairs"]
    groups = [f"{p['senders']} + {p['receivers']}" for p in pairs]
    systems = list(pairs[0]["systems"])
    fig, (rate_ax, p99_ax) = _figure(2)
    _bars(
        rate_ax,
        groups,
        {s: [p["systems"][s]["rate"] for p in pairs] for s in systems},
        "messages/s",
    )
    ceiling = data.get("ceiling", {})
    if ceiling:  # LPUSH and RPOP are within a few %: one line, both named
        rate_ax.axhline(max(ceiling.values()), ls="--", lw=1, color=COLOURS["redis-benchmark"])
        label = ", ".join(f"{op} {rate:,.0f}/s" for op, rate in ceiling.items())
        rate_ax.annotate(
            f"redis-benchmark {label}", (-0.4, max(ceiling.values())), fontsize=7, va="bottom"
        )
    rate_ax.set_title("Layer throughput, one channel (senders + receivers)")
    rate_ax.legend(fontsize=8)
    _bars(
        p99_ax,
        groups,
        {s: [p["systems"][s]["p99"] * 1000 for p in pairs] for s in systems},
        "p99 ms (send to receive)",
    )
    p99_ax.set_title("Layer latency, p99")
    rows = [
        f"| {g} | {s} | {p['systems'][s]['rate']:,.0f} | {p['systems'][s]['p99'] * 1000:.2f} |"
        for g, p in zip(groups, pairs, strict=True)
        for s in systems
    ]
    rows += [
        f"| {clients} | redis-benchmark {op} | {r:,.0f} | - |"
        for clients, key in (("16 clients", "ceiling"), ("1 client", "one_client"))
        for op, r in data.get(key, {}).items()
    ]
    table = ["| senders + receivers | layer | messages/s | p99 ms |", "|---|---|---|---|", *rows]
    return [_save(fig, out, "layer")], table


def _by_system(runs: list[dict[str, Any]], x: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: r[x]):
        out.setdefault(run["system"], []).append(run)
    return out


def websocket(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    systems = _by_system(data["runs"], "connections")
    counts = sorted({r["connections"] for r in data["runs"]})
    groups = [f"{c:,} sockets" for c in counts]
    fig, (rate_ax, p99_ax) = _figure(2, 6.0)
    _bars(
        rate_ax,
        groups,
        {s: [r["rate"] for r in runs] for s, runs in systems.items()},
        "round trips/s",
    )
    rate_ax.set_title("WebSocket echo throughput")
    _bars(
        p99_ax,
        groups,
        {s: [r["p99"] * 1000 for r in runs] for s, runs in systems.items()},
        "p99 ms",
    )
    p99_ax.set_title("WebSocket echo round trip, p99")
    p99_ax.legend(fontsize=7, loc="upper left")
    table = [
        "| sockets | server | round trips/s | p99 ms | sockets lost |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {r['connections']:,} | {s} | {r['rate']:,.0f} | {r['p99'] * 1000:.1f} | {int(r['errors'])} |"
        for s, runs in systems.items()
        for r in runs
    ]
    return [_save(fig, out, "websocket")], table


def fanout(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    systems = _by_system(data["runs"], "room")
    rooms = sorted({r["room"] for r in data["runs"]})
    fig, (ax,) = _figure(1, 6.5)
    _bars(
        ax,
        [f"room of {n:,}" for n in rooms],
        {s: [r["rate"] for r in runs] for s, runs in systems.items()},
        "deliveries/s",
    )
    ax.set_title(f"Room fan-out, {data['messages']} messages back to back")
    ax.legend(fontsize=8)
    table = ["| room | server | deliveries/s | delivered | problems |", "|---|---|---|---|---|"]
    table += [
        f"| {r['room']:,} | {s} | {r['rate']:,.0f} | {int(r['delivered']):,} / {int(r['expected']):,} | {r['problems']} |"
        for s, runs in systems.items()
        for r in runs
    ]
    return [_save(fig, out, "fanout")], table


def idle_sockets(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    fig, (ax,) = _figure(1, 6.5)
    table = [
        "| server | sockets | KB per socket | RSS MB | after closing all | with them again |",
        "|---|---|---|---|---|---|",
    ]
    for system, r in data["systems"].items():
        steps = r["steps"]
        ax.plot(
            [s["sockets"] for s in steps],
            [s["per_socket"] for s in steps],
            marker="o",
            label=system,
            color=colour("channelapp" if system.startswith("channelapp") else "daphne"),
        )
        for s in steps:
            table.append(
                f"| {system} | {s['sockets']:,} | {s['per_socket']:.1f} | {s['rss'] / 1024:.0f} | | |"
            )
        table[-1] = (
            table[-1][:-4] + f" {r['after_close'] / 1024:.0f} | {r['reopened'] / 1024:.0f} |"
        )
    ax.axhline(10, ls="--", lw=1, color="#6e7781")
    ax.text(0.01, 10, "10 KB", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("idle WebSockets on one server process")
    ax.set_ylabel("RSS KB per socket")
    ax.set_ylim(bottom=0)
    ax.set_title("Memory per idle WebSocket")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return [_save(fig, out, "idle_sockets")], table


def autoscale_steady(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    return _policies_over_time(data, out, "autoscale_steady")


def autoscale_processes(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    return _policies_over_time(data, out, "autoscale_processes")


def _policies_over_time(data: dict[str, Any], out: Path, name: str) -> tuple[list[str], list[str]]:
    """Per load: workers asked for by each policy against workers needed, and queue wait."""
    charts = []
    table = [
        "| load | policy | workers mean (needed) | seconds outside [need, need+1] | wait p99 max ms |",
        "|---|---|---|---|---|",
    ]
    for i, load in enumerate(data["loads"]):
        fig, (workers_ax, wait_ax) = _figure(2, 6.0)
        needed_drawn = False
        for policy, run in load["runs"].items():
            if not needed_drawn:
                workers_ax.plot(
                    run["t"], run["needed"], color="black", ls="--", lw=1, label="needed"
                )
                needed_drawn = True
            workers_ax.step(
                run["t"], run["workers"], where="post", color=colour(policy), lw=1.2, label=policy
            )
            wait_ax.plot(
                run["wait_t"],
                [w * 1000 for w in run["wait_p99"]],
                color=colour(policy),
                lw=1,
                label=policy,
            )
            # Time-weighted: each sample holds until the next one.
            t, workers, needed_at = run["t"], run["workers"], run["needed"]
            spans = [b - a for a, b in pairwise(t)]
            outside = sum(
                span
                for span, w, n in zip(spans, workers, needed_at, strict=False)
                if not n <= w <= n + 1
            )
            total = sum(spans) or 1.0
            mean = sum(span * w for span, w in zip(spans, workers, strict=False)) / total
            needed = sum(span * n for span, n in zip(spans, needed_at, strict=False)) / total
            worst = max(run["wait_p99"], default=0.0) * 1000
            table.append(
                f"| {load['load']} | {policy} | {mean:.1f} ({needed:.1f}) | {outside:.0f} | {worst:,.0f} |"
            )
        workers_ax.set_title(f"{load['load']}: workers", fontsize=9)
        workers_ax.set_xlabel("s")
        workers_ax.set_ylabel("workers")
        workers_ax.legend(fontsize=7)
        wait_ax.set_title(f"{load['load']}: queue wait p99 per second", fontsize=9)
        wait_ax.set_yscale("symlog", linthresh=10)
        wait_ax.set_xlabel("s")
        wait_ax.set_ylabel("ms")
        wait_ax.legend(fontsize=7)
        for ax in (workers_ax, wait_ax):
            ax.grid(alpha=0.3)
        charts.append(_save(fig, out, f"{name}_{i + 1}"))
    return charts, table


def _hbars(ax: Axes, labels: list[str], values: list[float], xlabel: str) -> None:
    """One horizontal bar per system, named on the y axis, its value written beside it."""
    bars = ax.barh(labels, values, color=[colour(label) for label in labels])
    ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=7, padding=2)
    ax.invert_yaxis()  # the first system on top
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def sync_http(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    runs = data["runs"]
    fig, (rate_ax, p99_ax) = _figure(2, 6.5)
    labels = [r["system"] for r in runs]
    _hbars(rate_ax, labels, [r["rate"] for r in runs], "requests/s")
    rate_ax.set_title(
        f"Sync HTTP: {data['requests']} requests x {data['work_ms']:g} ms, "
        f"{data['concurrency']} in flight",
        fontsize=9,
    )
    _hbars(p99_ax, labels, [r["p99"] * 1000 for r in runs], "p99 ms")
    p99_ax.set_yticks(range(len(labels)), [""] * len(labels))  # named on the left chart
    p99_ax.set_title("Sync HTTP: p99", fontsize=9)
    table = [
        "| server | requests/s | p50 ms | p99 ms | wall s | failures |",
        "|---|---|---|---|---|---|",
    ]
    table += [
        f"| {r['system']} | {r['rate']:,.0f} | {r['p50'] * 1000:.1f} | {r['p99'] * 1000:.1f} "
        f"| {r['wall']:.2f} | {r['failures']} |"
        for r in runs
    ]
    return [_save(fig, out, "sync_http")], table


def autoscale(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    """A surge on the real control plane: the operator's replicas against the KEDA-like model's."""
    fig, (ax,) = _figure(1, 9.0)
    needed = data["needed"]
    ax.step(
        needed["t"], needed["workers"], where="post", color="black", ls="--", lw=1, label="needed"
    )
    for system, trace in data["systems"].items():
        key = "channelapp" if system.startswith("channelapp") else "KEDA-like"
        ax.step(trace["t"], trace["workers"], where="post", color=colour(key), lw=1.4, label=system)
    ax.set_xlabel("s from the surge")
    ax.set_ylabel("worker replicas")
    ax.set_title(
        f"A surge of {data['surge']} messages (target {data['target']} per worker, "
        f"max {data['max']}), drained after {needed['t'][2]:.0f} s"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    table = [
        "| autoscaler | surge -> max workers (s) | drained -> 1 worker (s) |",
        "|---|---|---|",
        f"| channelapp operator (measured) | {data['up']:.2f} | {data['down']:.1f} |",
        f"| KEDA-like (model, mean over phases) | {data['keda_up']:.1f} | {data['keda_down']:.1f} |",
    ]
    return [_save(fig, out, "autoscale")], table


def operator_scale(data: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    """Per app count and load: polls and status writes per app, and the CPU each part used."""
    runs = sorted(data["runs"], key=lambda r: (r["operator"], r["load"], r["apps"]))
    fig, (cpu_ax, rate_ax) = _figure(2, 6.0)
    labels = [
        f"{r['apps']} {r['load']}" + ("" if r["operator"] == "this tree" else " (old)")
        for r in runs
    ]
    bottom = [0.0] * len(runs)
    for part, shade in (("operator", "#1f6feb"), ("apiserver", "#bf8700"), ("etcd", "#6e7781")):
        values = [r[f"cpu_{part}"] for r in runs]
        cpu_ax.bar(labels, values, bottom=bottom, label=part, color=shade)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    cpu_ax.axhline(100, ls="--", lw=1, color="black")
    cpu_ax.set_ylabel("% of one core")
    cpu_ax.set_title("Operator, API server and etcd CPU")
    cpu_ax.legend(fontsize=8)
    cpu_ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    xs = range(len(runs))
    rate_ax.bar(
        [x - 0.2 for x in xs], [r["polls"] for r in runs], 0.4, label="polls/app/s", color="#1f6feb"
    )
    rate_ax.bar(
        [x + 0.2 for x in xs],
        [r["watched_writes"] for r in runs],
        0.4,
        label="status writes/app/s",
        color="#d1242f",
    )
    rate_ax.set_xticks(list(xs), labels)
    rate_ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    rate_ax.set_title("Polls and status writes per app per second")
    rate_ax.legend(fontsize=8)
    for ax in (cpu_ax, rate_ax):
        ax.grid(axis="y", alpha=0.3)
    table = [
        "| apps | operator | load | polls/app/s | status writes/app/s | CPU % operator / API server / etcd | surge -> replicas s |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [
        f"| {r['apps']:,} | {r['operator']} | {r['load']} | {r['polls']:.2f} | {r['watched_writes']:.3f} "
        f"| {r['cpu_operator']:.1f} / {r['cpu_apiserver']:.1f} / {r['cpu_etcd']:.1f} "
        f"| {r['surge']:.2f} |"
        if "surge" in r
        else f"| {r['apps']:,} | {r['operator']} | {r['load']} | {r['polls']:.2f} | {r['watched_writes']:.3f} "
        f"| {r['cpu_operator']:.1f} / {r['cpu_apiserver']:.1f} / {r['cpu_etcd']:.1f} | - |"
        for r in runs
    ]
    return [_save(fig, out, "operator_scale")], table


SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any], Path], tuple[list[str], list[str]]]]] = {
    "layer": ("Channel layer (`python -m bench.layer`)", layer),
    "websocket": ("WebSocket echo (`python -m bench.websocket`)", websocket),
    "fanout": ("Room fan-out (`python -m bench.fanout`)", fanout),
    "idle_sockets": ("Memory per idle WebSocket (`python -m bench.idle_sockets`)", idle_sockets),
    "sync_http": ("Sync HTTP consumers (`python -m bench.sync_http`)", sync_http),
    "autoscale": ("Autoscaling a surge, real API server (`python -m bench.autoscale`)", autoscale),
    "autoscale_steady": (
        "Autoscaling under steady and changing loads (`python -m bench.autoscale_steady`)",
        autoscale_steady,
    ),
    "autoscale_processes": (
        "Autoscaling real worker processes (`python -m bench.autoscale_processes`)",
        autoscale_processes,
    ),
    "operator_scale": ("Operator cost per app (`python -m bench.operator_scale`)", operator_scale),
}


def render(data_dir: Path, out: Path) -> Path:
    """Draw every benchmark found in ``data_dir`` into ``out``; returns the page."""
    out.mkdir(parents=True, exist_ok=True)
    found = load_all(data_dir)
    lines = [
        "# Benchmark report",
        "",
        "Drawn by `python -m bench.report` (`make bench` runs the benchmarks, then this) from the",
        "figures each benchmark saved on its latest run. Every system runs on the same machine in the",
        "same run.",
        "",
    ]
    for name, (title, draw) in SECTIONS.items():
        lines += [f"## {title}", ""]
        data = found.get(name)
        if data is None:
            lines += ["Not run yet.", ""]
            continue
        charts, table = draw(data, out)
        lines += [f"{data['machine']}, {data['at']}.", ""]
        lines += [f"![{name}]({chart})" for chart in charts]
        lines += ["", *table, ""]
    page = out / "README.md"
    page.write_text("\n".join(lines))
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="figures (bench/report/data)")
    parser.add_argument("--out", type=Path, default=REPORT, help="where the page goes")
    args = parser.parse_args()
    page = render(args.data or results_dir(), args.out)
    print(f"report: {page}")


if __name__ == "__main__":
    main()
