"""The operator's cost per app: N ChannelApps polled every second, idle and busy.

One real control plane (devtools.controlplane: etcd, kube-apiserver, kwok), one
redis-server holding every app's channels (``redis.external``, each app under its own
key prefix), the operator as a process watching the bench namespace. Apps run no
protocol servers and scale workers 0..4 above an activation depth the load never
reaches, so the only pods are the surge's: what is measured is the poll loops, their
status writes and the API server behind them.

Per N, two windows of WINDOW seconds after a warm-up:

- idle: every app's depth stays 0;
- busy: a loader moves every app's depth every half second (0, 3, 6, 9, 6, 3, 0, ...,
  each app at its own offset), so the depth changes on every poll and touches 0.

Measured: polls per app per second (the operator's depth-read counter), status writes
per app per second (MODIFIED events of a watch on the ChannelApps: every write of an
app, whoever makes it), CPU of the operator, kube-apiserver and etcd (/proc/<pid>/stat,
% of one core) and their RSS; in the busy window, a surge on one more app (400 waiting
messages, 4 workers wanted): seconds from the push to its Deployment's replicas.

With ``--compare DIR`` each N runs a second time with the operator package found in DIR
(``DIR/channelapp_operator``, e.g. the ``operator/`` directory of an older checkout),
on a fresh control plane, and its rows are labelled ``compared``.

    python -m bench.operator_scale [--apps 50 200] [--window 30] [--compare DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
import yaml
from channelapp.layer import RedisChannelLayer
from channelapp.layer.keyspace import app_prefix

from bench.common import machine, table
from bench.results import save
from devtools.controlplane import ControlPlane, start_for_tests
from devtools.kube import KubeCluster
from devtools.operator import CRD, OperatorProcess
from devtools.redis import RedisServer

NS = "bench"
CHANNEL = "http.request"
PATTERN = [0, 3, 6, 9, 6, 3]  # depth steps, one per STEP seconds
STEP = 0.5
SURGE = 400
SETTLE = 20.0  # seconds after every app settled before the idle window
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def app_manifest(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "channelapp.dev/v1alpha1",
        "kind": "ChannelApp",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "image": "ghcr.io/channelapp/channelapp:0.1.0",
            "app": "channelapp.examples.echo:app",
            "protocol": {"replicas": 0},
            "workers": {
                "minReplicas": 0,
                "maxReplicas": 4,
                "targetQueueDepth": 100,
                "activationQueueDepth": 50,
                "scaleDownStabilizationSeconds": 30,
                "pollIntervalSeconds": 1,
            },
            "redis": {"external": {"urls": [url]}},
        },
    }


# --- process figures ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[21]) * PAGE / 2**20


def metric_sum(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


# --- the API server: a watch counting writes, and replica changes -----------------------------


class Watch(threading.Thread):
    """A watch stream on ``path``: counts MODIFIED events, calls ``on_event`` with each."""

    def __init__(self, plane: ControlPlane, path: str, on_event: Any = None) -> None:
        super().__init__(daemon=True)
        self.plane, self.path, self.on_event = plane, path, on_event
        self.modified = 0
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            url = f"{self.plane.server}{self.path}?watch=1&allowWatchBookmarks=false"
            req = urllib.request.Request(url)
            try:
                with urllib.request.urlopen(
                    req, context=self.plane._ssl_context(), timeout=600
                ) as resp:
                    for line in resp:
                        if self.stop:
                            return
                        if line.startswith(b'{"type":"MODIFIED"'):
                            self.modified += 1
                        if self.on_event is not None:
                            self.on_event(line)
            except Exception:
                if not self.stop:
                    time.sleep(0.5)


class Replicas:
    """The surge app's worker replicas, as the Deployments watch reports them."""

    def __init__(self, name: str) -> None:
        self.name = f"{name}-worker"
        self.replicas = 0
        self.changed = threading.Condition()
        self.at: dict[int, float] = {}

    def __call__(self, line: bytes) -> None:
        if self.name.encode() not in line:
            return
        event = json.loads(line)
        obj = event["object"]
        if obj["metadata"]["name"] != self.name:
            return
        replicas = int(obj["spec"].get("replicas", 0))
        with self.changed:
            if replicas != self.replicas:
                self.replicas = replicas
                self.at.setdefault(replicas, time.monotonic())
                self.changed.notify_all()

    def wait(self, want: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.replicas != want:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            return self.at[want]


# --- the load ----------------------------------------------------------------------------


def channel_key_and_item(url: str, prefix: str) -> tuple[bytes, bytes]:
    """The Redis list of an app's ``CHANNEL`` and one message as the layer stores it."""
    import asyncio

    async def once() -> None:
        layer = RedisChannelLayer([url], prefix=prefix, capacity=10_000, expiry=3600)
        try:
            await layer.send(CHANNEL, {"type": "probe"})
        finally:
            await layer.close()

    asyncio.run(once())
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            if client.type(key) == b"list":
                item = client.lindex(key, 0)
                assert item is not None
                client.delete(key)
                return key, item
    finally:
        client.close()
    raise RuntimeError(f"no channel list under {prefix}")


class Loader(threading.Thread):
    """Moves every app's depth along PATTERN, one step every STEP seconds."""

    def __init__(self, url: str, keys: list[bytes], item: bytes) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.keys, self.item = keys, item
        self.depth = [0] * len(keys)
        self.running = threading.Event()
        self.stop = False

    def run(self) -> None:
        step = 0
        next_at = time.monotonic()
        while not self.stop:
            next_at += STEP
            if self.running.is_set():
                pipe = self.client.pipeline(transaction=False)
                for i, key in enumerate(self.keys):
                    want = PATTERN[(step + i) % len(PATTERN)]
                    diff = want - self.depth[i]
                    if diff > 0:
                        pipe.rpush(key, *([self.item] * diff))
                    elif diff < 0:
                        pipe.lpop(key, -diff)
                    self.depth[i] = want
                pipe.execute()
                step += 1
            time.sleep(max(0.0, next_at - time.monotonic()))

    def clear(self) -> None:
        if self.keys:
            self.client.delete(*self.keys)
        self.depth = [0] * len(self.keys)


# --- one N --------------------------------------------------------------------------------


def measure(
    plane: ControlPlane,
    operator: OperatorProcess,
    apps: int,
    window: float,
    watch: Watch,
) -> dict[str, float]:
    assert operator.proc is not None
    pids = {
        "operator": operator.proc.pid,
        "apiserver": next(c.pid for c in plane.components if c.name == "kube-apiserver"),
        "etcd": next(c.pid for c in plane.components if c.name == "etcd"),
    }
    text = operator.metrics()
    reads0 = metric_sum(text, "channelapp_operator_depth_read_seconds_count")
    writes0 = metric_sum(text, "channelapp_operator_status_writes_total")
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    modified0, t0 = watch.modified, time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    text = operator.metrics()
    out = {
        "polls": (metric_sum(text, "channelapp_operator_depth_read_seconds_count") - reads0)
        / apps
        / elapsed,
        "status_writes": (metric_sum(text, "channelapp_operator_status_writes_total") - writes0)
        / apps
        / elapsed,
        "watched_writes": (watch.modified - modified0) / apps / elapsed,
    }
    for k, p in pids.items():
        out[f"cpu_{k}"] = 100 * (cpu_seconds(p) - cpu0[k]) / elapsed
        out[f"rss_{k}"] = rss_mb(p)
    return out


def settled_app(status: dict[str, Any]) -> bool:
    progressing = [c for c in status.get("conditions") or [] if c["type"] == "Progressing"]
    return (
        status.get("observedGeneration") == 1
        and status.get("queue") == "0"
        and bool(progressing)
        and progressing[0]["reason"] == "RolloutComplete"
    )


def run_n(
    plane: ControlPlane,
    cluster: KubeCluster,
    shard: RedisServer,
    apps: int,
    window: float,
    operator_path: str | None = None,
) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-operator-scale-"))
    cluster.kubectl("create", "namespace", NS)
    names = [f"app-{i:04d}" for i in range(apps)]
    surge_app = "surge"
    url = shard.url
    env = None
    if operator_path is not None:
        env = {"PYTHONPATH": os.pathsep.join([operator_path, os.environ.get("PYTHONPATH", "")])}
    operator = OperatorProcess(
        cluster,
        NS,
        tmp,
        env=env,
        args=[
            "--standalone", "--namespace", NS, "--log-level", "warning",
            # One redis-server for every app: dial as fast as the apps start.
            "--dials-per-second", "5000", "--dials-per-destination-per-second", "5000",
        ],
    )  # fmt: skip
    operator.start()
    replicas = Replicas(surge_app)
    apps_watch = Watch(plane, f"/apis/channelapp.dev/v1alpha1/namespaces/{NS}/channelapps")
    deployments = Watch(plane, f"/apis/apps/v1/namespaces/{NS}/deployments", replicas)
    apps_watch.start()
    deployments.start()
    keys: list[bytes] = []
    item = b""
    loader: Loader | None = None
    results: dict[str, dict[str, float]] = {}
    try:
        t0 = time.monotonic()
        manifests = [app_manifest(n, url) for n in [*names, surge_app]]
        for i in range(0, len(manifests), 100):
            cluster.kubectl(
                "create", "-f", "-", input=yaml.safe_dump_all(manifests[i : i + 100]), timeout=300
            )
        # Every app applied and polled: its generation observed, its children rolled out,
        # its depth shown.
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            listed = cluster.kubectl_json("get", "channelapps", "-n", NS)["items"]
            settled = sum(1 for a in listed if settled_app(a.get("status") or {}))
            if settled == len(manifests):
                break
            time.sleep(2)
        else:
            raise RuntimeError(f"only {settled} of {len(manifests)} apps settled after 900 s")
        print(f"  {apps} apps created and settled in {time.monotonic() - t0:.0f} s", flush=True)
        # The key of one app's channel, found by sending to an app nobody watches; the
        # others' differ only by their prefix (no app sees a send: its arrival rate stays 0).
        probe = app_prefix(NS, "zz-probe").encode()
        probe_key, item = channel_key_and_item(url, probe.decode())
        keys = [probe_key.replace(probe, app_prefix(NS, n).encode()) for n in names]
        surge_key = probe_key.replace(probe, app_prefix(NS, surge_app).encode())
        loader = Loader(url, keys, item)
        loader.start()
        time.sleep(SETTLE)  # the creation's writes settle
        results["idle"] = measure(plane, operator, apps + 1, window, apps_watch)
        loader.running.set()
        time.sleep(10)
        results["busy"] = measure(plane, operator, apps + 1, window / 2, apps_watch)
        # A surge on one app while the others are busy: the push to the replicas.
        client = redis.Redis.from_url(url)
        try:
            pushed = time.monotonic()
            client.rpush(surge_key, *([item] * SURGE))
            reached = replicas.wait(4, 30)
            client.delete(surge_key)
        finally:
            client.close()
        rest = measure(plane, operator, apps + 1, window / 2, apps_watch)
        busy = results["busy"]
        for k, v in rest.items():  # the two halves of the busy window, averaged
            busy[k] = v if k.startswith("rss_") else (busy[k] + v) / 2
        busy["surge"] = reached - pushed if reached is not None else float("nan")
    finally:
        if loader is not None:
            loader.stop = True
            loader.join(5)
            loader.clear()
        apps_watch.stop = deployments.stop = True
        operator.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--compare", metavar="DIR", help="also run the operator package in DIR")
    args = parser.parse_args()
    print(f"# operator cost per app, poll 1 s ({machine()})", flush=True)
    rows = []
    raw: dict[str, Any] = {}
    saved: list[dict[str, Any]] = []
    runs = [(apps, None) for apps in args.apps]
    if args.compare:
        runs += [(apps, str(Path(args.compare).resolve())) for apps in args.apps]
    for apps, operator_path in runs:
        which = "this tree" if operator_path is None else "compared"
        # A fresh control plane per run: etcd and the API server start empty.
        plane = start_for_tests()
        try:
            cluster = KubeCluster.for_plane(plane)
            cluster.kubectl("apply", "--server-side", "-f", str(CRD))
            for _ in range(50):  # the CRD's status may not be there yet
                established = cluster.kubectl(
                    "wait", "--for=condition=Established", "crd/channelapps.channelapp.dev",
                    check=False,
                )  # fmt: skip
                if established.returncode == 0:
                    break
                time.sleep(0.2)
            shard = RedisServer().start()
            try:
                results = run_n(plane, cluster, shard, apps, args.window, operator_path)
            finally:
                shard.cleanup()
        finally:
            plane.stop()
        raw[f"{apps} {which}"] = results
        for phase, r in results.items():
            saved.append({"apps": apps, "operator": which, "load": phase, **r})
            rows.append(
                [
                    str(apps),
                    which,
                    phase,
                    f"{r['polls']:.2f}",
                    f"{r['status_writes']:.3f}",
                    f"{r['watched_writes']:.3f}",
                    f"{r['cpu_operator']:.1f}",
                    f"{r['cpu_apiserver']:.1f}",
                    f"{r['cpu_etcd']:.1f}",
                    f"{r['rss_operator']:.0f} / {r['rss_apiserver']:.0f} / {r['rss_etcd']:.0f}",
                    f"{r['surge']:.2f}" if "surge" in r else "",
                ]
            )
        print(f"  N={apps} ({which}): {json.dumps(results)}", flush=True)
    print()
    print(
        table(
            [
                "apps",
                "operator",
                "load",
                "polls/app/s",
                "status writes/app/s",
                "watched writes/app/s",
                "operator CPU %",
                "apiserver CPU %",
                "etcd CPU %",
                "RSS MB (op/api/etcd)",
                "surge -> replicas (s)",
            ],
            rows,
        )
    )
    save("operator_scale", {"window": args.window, "runs": saved})


if __name__ == "__main__":
    main()
