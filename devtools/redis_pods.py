"""Replicated managed Redis without a cluster: the operator's shard and Sentinel scripts
(operator/channelapp_operator/redis_scripts.py) run as local processes, one loopback address
per pod, their DNS names in a private /etc/hosts.

Run as root inside private mount and network namespaces, which this module does itself::

    python -m devtools.redis_pods            # prints one JSON line of figures

One shard with one replica and three Sentinels, with the env builders.py gives the pods;
then the master is (1) SIGKILLed and restarted at once (a container restart), (2) stopped
as Kubernetes stops a pod (preStop, then SIGTERM) and brought back at another address (a
pod re-created), (3) SIGKILLed and left down. Each time the Sentinels must name the other
pod, the data must be on it, and the stopped pod must come back as its replica. During (2)
a client keeps writing to the old master: what it heard acknowledged must be on the new one
and nothing else, and no write may be left unanswered (cut while it may have run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from channelapp_operator import builders, redis_scripts
from redis.backoff import NoBackoff
from redis.retry import Retry

PASSWORD = "local-test-password"
SPEC: dict[str, Any] = {
    "image": "unused",
    "app": "unused:app",
    "redis": {"managed": {"shards": 1, "replicas": 1, "sentinels": 3}},
}
APP, NAMESPACE = "chat", "ns"
SHARDS = ["chat-redis-0", "chat-redis-1"]
SENTINELS = [f"chat-redis-sentinel-{m}" for m in range(3)]
DOWN_AFTER_MS = 2000


def _env_of(manifest: dict[str, Any]) -> dict[str, str]:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


class Pods:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.domain = builders.redis_domain(APP, NAMESPACE)
        children = {m["metadata"]["name"]: m for m in builders.children(APP, NAMESPACE, "u", SPEC)
                    if m["kind"] == "StatefulSet"}  # fmt: skip
        self.shard_env = _env_of(children["chat-redis"])
        self.sentinel_env = _env_of(children["chat-redis-sentinel"])
        self.ips = {pod: f"127.0.0.{10 + i}" for i, pod in enumerate(SHARDS + SENTINELS)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.bin = work / "bin"
        self.bin.mkdir()
        # Each pod listens on its own address (Kubernetes gives it its own IP), and redis-cli
        # without -h talks to the pod it runs in.
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server is required (Debian: apt-get install redis-server)")
        (self.bin / "redis-server").write_text(f'#!/bin/sh\nexec {server} "$@" --bind "$POD_IP"\n')
        (self.bin / "redis-cli").write_text(
            '#!/bin/sh\nfor a in "$@"; do [ "$a" = -h ] && exec '
            f'{cli} "$@"; done\nexec {cli} -h "$POD_IP" "$@"\n'
        )
        for tool in ("redis-server", "redis-cli"):
            (self.bin / tool).chmod(0o755)
        self.hosts = work / "hosts"
        self.write_hosts()
        subprocess.run(["mount", "--bind", str(self.hosts), "/etc/hosts"], check=True)

    def write_hosts(self) -> None:
        lines = ["127.0.0.1 localhost"] + [f"{ip} {p}.{self.domain}" for p, ip in self.ips.items()]
        self.hosts.write_text("\n".join(lines) + "\n")

    def env(self, pod: str) -> dict[str, str]:
        base = self.sentinel_env if "sentinel" in pod else self.shard_env
        return {
            **base,
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOSTNAME": pod,
            "POD_IP": self.ips[pod],
            "REDIS_PASSWORD": PASSWORD,
            "REDISCLI_AUTH": PASSWORD,
            "SENTINEL_DOWN_AFTER_MS": str(DOWN_AFTER_MS),
        }

    def script(self, pod: str, script: str) -> str:
        """The script with the pod's volume (/data or /sentinel) in the work directory."""
        volume = self.work / pod
        volume.mkdir(exist_ok=True)
        return (
            script.replace("conf=/sentinel/", f"conf={volume}/")
            .replace("dir /sentinel", f"dir {volume}")
            .replace("--dir /data", f"--dir {volume}")
        )

    def start(self, pod: str) -> None:
        sentinel = "sentinel" in pod
        script = redis_scripts.SENTINEL_START if sentinel else redis_scripts.REDIS_START
        log = (self.work / f"{pod}.log").open("a")
        self.procs[pod] = subprocess.Popen(
            ["sh", "-c", self.script(pod, script)], env=self.env(pod), stdout=log, stderr=log
        )

    def run(self, pod: str, script: str) -> bool:
        proc = subprocess.run(
            ["sh", "-c", self.script(pod, script)], env=self.env(pod), capture_output=True,
            timeout=60,
        )  # fmt: skip
        return proc.returncode == 0

    def ready(self, pod: str) -> bool:
        sentinel = "sentinel" in pod
        return self.run(
            pod, redis_scripts.SENTINEL_READY if sentinel else redis_scripts.REDIS_READY
        )

    def cli(self, pod: str, *args: str) -> str:
        port = "26379" if "sentinel" in pod else "6379"
        argv = ["redis-cli", "--no-auth-warning", "-h", self.ips[pod], "-p", port, *args]
        env = {"REDISCLI_AUTH": PASSWORD} if port == "6379" else {}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=5, env=env)
        return proc.stdout.strip()

    def master(self) -> str | None:
        """The pod every Sentinel names as the master, or None while they differ."""
        named = {
            self.cli(s, "--raw", "sentinel", "get-master-addr-by-name", "shard-0").split("\n")[0]
            for s in SENTINELS
        }
        return named.pop().split(".")[0] if len(named) == 1 else None

    def role(self, pod: str) -> dict[str, str]:
        info = self.cli(pod, "info", "replication")
        return dict(line.split(":", 1) for line in info.splitlines() if ":" in line)

    def stop(self, pod: str, kill: bool) -> None:
        proc = self.procs.pop(pod)
        if kill:
            proc.kill()
        else:
            proc.terminate()
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(10)


def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (OSError, subprocess.SubprocessError, ValueError):
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


class Writer(threading.Thread):
    """INCRs one key on one server, one at a time, counting each kind of answer: ``ok``
    (acknowledged), an error reply's code (certainly not run) or ``cut`` (the connection
    broke with the command written: it may have run)."""

    def __init__(self, host: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(
            host=host, port=6379, password=PASSWORD, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        self.replies: dict[str, int] = {"ok": 0, "cut": 0}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.client.incr("handover")
                kind = "ok"
            except redis.ReadOnlyError:
                kind = "READONLY"
            except redis.ResponseError as exc:
                kind = str(exc).split()[0]
            except (redis.ConnectionError, redis.TimeoutError):
                kind = "cut"
            self.replies[kind] = self.replies.get(kind, 0) + 1
            time.sleep(0.002)

    def stop(self) -> None:
        self.done.set()
        self.join(10)
        self.client.close()


def scenarios(pods: Pods) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pod in SHARDS + SENTINELS:
        pods.start(pod)
    started = time.monotonic()
    wait(lambda: all(pods.ready(p) for p in SHARDS + SENTINELS), 60, "every pod ready")
    out["ready_seconds"] = round(time.monotonic() - started, 2)
    out["first_master"] = pods.master()
    assert pods.cli("chat-redis-0", "set", "kept", "1") == "OK"
    # Replication is asynchronous: a write the replica has not received dies with a
    # SIGKILLed master, whatever the scripts do.
    wait(lambda: pods.cli("chat-redis-1", "get", "kept") == "1", 30, "the replica has the key")

    def other(pod: str) -> Callable[[], str | None]:
        def named() -> str | None:
            master = pods.master()
            return master if master and master != pod else None

        return named

    def back_as_replica(pod: str, master: str) -> bool:
        role = pods.role(pod)
        return (
            role.get("role") == "slave"
            and role.get("master_host", "").startswith(master + ".")
            and role.get("master_link_status") == "up"
        )

    # (1) restart in place: the script finds itself named and has the replica promoted.
    old = wait(pods.master, 10, "a master")
    wait(lambda: back_as_replica("chat-redis-1", old) or None, 30, "the replica in sync")
    began = time.monotonic()
    pods.stop(old, kill=True)
    pods.start(old)
    new = wait(other(old), 30, "a failover after a restart in place")
    out["restart_in_place"] = {
        "from": old,
        "to": new,
        "seconds": round(time.monotonic() - began, 2),
    }
    wait(lambda: back_as_replica(old, new), 30, "the restarted pod a replica")
    out["restart_in_place"]["kept"] = pods.cli(new, "get", "kept") == "1"
    out["restart_in_place"]["old_synced"] = pods.cli(old, "get", "kept") == "1"

    # (2) a pod deleted: preStop, SIGTERM, re-created at another address.
    old = new
    wait(lambda: all(pods.ready(p) for p in SHARDS), 30, "both shard pods ready")
    writes = Writer(pods.ips[old])
    writes.start()
    time.sleep(0.5)
    began = time.monotonic()
    pods.run(old, redis_scripts.REDIS_PRE_STOP)
    pre_stop = time.monotonic() - began
    writes.stop()
    pods.stop(old, kill=False)
    new = wait(other(old), 30, "a failover on delete")
    out["delete"] = {
        "from": old, "to": new, "pre_stop_seconds": round(pre_stop, 2),
        "seconds": round(time.monotonic() - began, 2), "writes": writes.replies,
        "writes_on_new": int(pods.cli(new, "get", "handover") or 0),
    }  # fmt: skip
    pods.ips[old] = f"127.0.0.{40 + SHARDS.index(old)}"
    pods.write_hosts()
    pods.start(old)
    wait(lambda: back_as_replica(old, new), 30, "the re-created pod a replica")
    out["delete"]["kept"] = pods.cli(new, "get", "kept") == "1"

    # (3) a crash with no restart: the Sentinels notice after down-after-milliseconds.
    old = new
    wait(lambda: all(pods.ready(p) for p in SHARDS), 30, "both shard pods ready")
    time.sleep(DOWN_AFTER_MS / 1000 * 2)  # every Sentinel has seen the re-created replica
    began = time.monotonic()
    pods.stop(old, kill=True)
    new = wait(other(old), 30, "a failover after a crash")
    out["crash"] = {"from": old, "to": new, "seconds": round(time.monotonic() - began, 2)}
    out["crash"]["kept"] = pods.cli(new, "get", "kept") == "1"
    pods.start(old)
    wait(lambda: back_as_replica(old, new), 30, "the crashed pod back as a replica")
    out["crash"]["rejoined"] = True
    return out


def main() -> None:
    if os.environ.get("CHANNELAPP_REDIS_PODS_INSIDE") != "1":
        # Private mount (for /etc/hosts) and network (for the loopback addresses) namespaces.
        env = {**os.environ, "CHANNELAPP_REDIS_PODS_INSIDE": "1"}
        argv = ["unshare", "--mount", "--net", sys.executable, "-m", "devtools.redis_pods"]
        raise SystemExit(subprocess.run(argv, env=env).returncode)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        pods = Pods(Path(tmp))
        try:
            print(json.dumps(scenarios(pods)))
        except TimeoutError as exc:
            logs = {p.name: p.read_text()[-3000:] for p in Path(tmp).glob("*.log")}
            print(json.dumps({"error": str(exc), "logs": logs}))
            raise SystemExit(1) from None
        finally:
            pods.close()


if __name__ == "__main__":
    main()
