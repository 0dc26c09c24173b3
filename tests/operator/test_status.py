"""What an app's status says on real shards: no rewrite per tick, a missing password Secret."""

from __future__ import annotations

import re
import time

import pytest
import yaml
from channelapp.layer.keyspace import app_prefix

from devtools.kube import KubeCluster
from devtools.operator import OperatorProcess, load_example
from devtools.polling import wait_for
from devtools.redis import RedisServer
from tests.operator.test_autoscaling import PASSWORD, apply_app, chapp, condition, push, shards

pytestmark = [pytest.mark.cluster, pytest.mark.redis]
__all__ = ["shards"]  # the fixture, shared with the autoscaling tests


def status_writes(operator: OperatorProcess, ns: str, name: str) -> float:
    labels = f'app="{name}",namespace="{ns}"'
    pattern = rf"^channelapp_operator_status_writes_total\{{{re.escape(labels)}\}} (\S+)$"
    found = re.search(pattern, operator.metrics(), re.M)
    return float(found.group(1)) if found else 0.0


def depth_reads(operator: OperatorProcess) -> float:
    """Queue-depth reads of the poll loops (one per tick of the one app here)."""
    found = re.search(
        r"^channelapp_operator_depth_read_seconds_count (\S+)$", operator.metrics(), re.M
    )
    return float(found.group(1)) if found else 0.0


def test_waiting_messages_do_not_rewrite_the_status_every_tick(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    shards: list[RedisServer],
) -> None:
    name = apply_app(
        kube_cluster, namespace, shards, minReplicas=1, maxReplicas=1, pollIntervalSeconds=0.25
    )
    wait_for(
        lambda: chapp(kube_cluster, namespace, name).get("status", {}).get("queue") == "0",
        30,
        what="depth 0 read",
    )
    push(shards, app_prefix(namespace, name), "http.request", 5)
    wait_for(
        lambda: chapp(kube_cluster, namespace, name)["status"].get("queueDepth") == 5,
        15,
        what="queueDepth 5",
    )
    # The oldest message ages every tick (0.25 s), yet the status is written every 5 s at most.
    before = status_writes(operator, namespace, name)
    assert before > 0, "the poll loop counts its status writes"
    ticks_before, started = depth_reads(operator), time.monotonic()
    # 32 ticks, each a chance to write the aged status: about 8 s at 4 ticks/s.
    wait_for(lambda: depth_reads(operator) >= ticks_before + 32, 60, what="32 more ticks")
    elapsed = time.monotonic() - started
    written = status_writes(operator, namespace, name) - before
    # One write per 5 s window, and one more for a change that is not the age (as before: 3
    # in 8 s); written per tick it would be about 32.
    assert written <= elapsed / 5 + 2, f"{written} status writes in 32 ticks ({elapsed:.1f} s)"
    assert chapp(kube_cluster, namespace, name)["status"]["oldestMessageAgeSeconds"] > 0


def test_missing_password_secret_is_named_not_an_auth_failure(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    shards: list[RedisServer],
) -> None:
    _, app = load_example("chat-external-redis.yaml")  # without its Secret
    app["spec"]["redis"]["external"]["urls"] = [f"redis://127.0.0.1:{s.port}/0" for s in shards]
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(app))
    name = app["metadata"]["name"]

    def degraded() -> dict | None:  # type: ignore[type-arg]
        status = chapp(kube_cluster, namespace, name).get("status", {})
        if not status.get("conditions"):
            return None
        cond = condition(chapp(kube_cluster, namespace, name), "Degraded")
        return cond if cond["status"] == "True" else None

    cond = wait_for(degraded, 30, what="Degraded=True")
    assert f"secret {namespace}/chat-redis-password not found" in cond["message"], cond
    assert "auth" not in cond["message"].lower(), cond
    assert PASSWORD not in cond["message"]
