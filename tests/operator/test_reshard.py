"""Changing the shard count: the decision to hold or apply, the spec applied meanwhile, the
conditions, and what the read of real shards counts as the app's data."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import yaml
from channelapp.layer import RedisChannelLayer, RedisMonitor
from channelapp.layer.common import WorkerReport
from channelapp.layer.keyspace import app_prefix
from channelapp_operator import reshard
from channelapp_operator.children_status import Workload
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.handlers import RESHARD_RECHECK
from channelapp_operator.reshard import ShardContents
from channelapp_operator.reshard_sweep import Swept
from channelapp_operator.status import StatusInputs, compute_status

from devtools.kube import KubeCluster
from devtools.operator import OperatorProcess, load_example
from devtools.polling import wait_for
from devtools.redis import RedisServer, redis_servers

TWO = {"external": {"urls": ["redis://h0:6379/0", "redis://h1:6379/0"]}}
THREE = {"external": {"urls": ["redis://h0:6379/0", "redis://h1:6379/0", "redis://h2:6379/0"]}}
SPEC: dict[str, Any] = {"image": "i", "app": "a:b", "redis": THREE}


def status_of(redis: dict[str, Any], waiting: str | None = None, **more: Any) -> dict[str, Any]:
    return {"dataShards": reshard.record(redis, "chat", "ns", waiting, **more)}


# --- hold or apply ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contents", "error", "hold", "message"),
    [
        (
            [ShardContents(0), ShardContents(1)],
            None,
            False,
            "resharding from 2 to 3 shards: the shards hold no messages, groups or sessions",
        ),
        (
            [ShardContents(0, queued=3, groups=1), ShardContents(1, groups=1)],
            None,
            True,
            "3 messages queued and 2 groups with members on shards 0-1; "
            "resharding from 2 to 3 shards waits until they are empty",
        ),
        (
            [ShardContents(0), ShardContents(1, queued=1)],
            None,
            True,
            "1 message queued on shard 1; resharding from 2 to 3 shards waits until they are empty",
        ),
        (
            [ShardContents(0, sessions=2), ShardContents(1), ShardContents(2, parked=1)],
            None,
            True,
            "2 sessions and 1 socket with parked messages on shards 0, 2; resharding from 2 to 3 "
            "shards waits until they are empty",
        ),
        (
            [ShardContents(0, queued=1, groups=2, sessions=1)],
            None,
            True,
            "1 message queued, 2 groups with members and 1 session on shard 0; resharding from 2 "
            "to 3 shards waits until they are empty",
        ),
        (
            [],
            "shard 1: connection refused",
            True,
            "the shards could not be read (shard 1: connection refused); resharding from 2 to 3 "
            "shards waits until they answer and are empty",
        ),
    ],
)
def test_decide(contents: list[ShardContents], error: str | None, hold: bool, message: str) -> None:
    decision = reshard.decide(contents, 2, 3, error)
    assert (decision.hold, decision.message) == (hold, message)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("P:ch:chat.room", "queued"),
        ("P:ch:http.response.abc!", "queued"),
        ("P:group:room-1", "group"),
        ("P:session:k1", "session"),
        ("P:parked:sock1", "parked"),
        # bookkeeping: statistics, registries, liveness markers, ordering counters, blobs
        ("P:sent", None),
        ("P:full", None),
        ("P:channels", None),
        ("P:workers", None),
        ("P:servers", None),
        ("P:alive:abc", None),
        ("P:order:sock1", None),
        ("P:blob:t", None),
        ("Q:ch:other-app", None),  # another app's key
        ("P-2:ch:x", None),
    ],
)
def test_classify(key: str, kind: str | None) -> None:
    assert reshard.classify("P", key) == kind


def test_no_recorded_set_applies_the_spec() -> None:
    assert reshard.change("chat", "ns", SPEC, {}) is None


def test_same_urls_is_no_change() -> None:
    assert reshard.change("chat", "ns", SPEC, status_of(THREE)) is None
    # the same shards written differently in the managed section: same URLs, no change
    managed = {"managed": {"shards": 2}}
    spec = {**SPEC, "redis": {"managed": {"shards": 2, "image": "redis:7"}}}
    assert reshard.change("chat", "ns", spec, status_of(managed)) is None


def test_a_new_count_is_a_change_from_the_recorded_set() -> None:
    moving = reshard.change("chat", "ns", SPEC, status_of(TWO))
    assert moving is not None
    assert moving.old_redis == TWO
    assert len(moving.old_urls) == 2 and len(moving.new_urls) == 3


@pytest.mark.parametrize("replicas", [0, 1])
def test_managed_count_change(replicas: int) -> None:
    spec = {**SPEC, "redis": {"managed": {"shards": 1, "replicas": replicas}}}
    old = {"managed": {"shards": 3, "replicas": replicas}}
    moving = reshard.change("chat", "ns", spec, status_of(old))
    assert moving is not None
    assert moving.old_redis == old
    assert (len(moving.old_urls), len(moving.new_urls)) == (3, 1)


def test_effective_spec_keeps_the_old_set_only_while_waiting() -> None:
    assert reshard.effective_spec(SPEC, status_of(TWO, "waits"))["redis"] == TWO
    assert reshard.effective_spec(SPEC, status_of(TWO))["redis"] == THREE
    assert reshard.effective_spec(SPEC, {})["redis"] == THREE


def test_record_removes_waiting_when_done() -> None:
    record = reshard.record(THREE, "chat", "ns", None)
    assert record == {
        "redis": json.dumps(THREE, sort_keys=True, separators=(",", ":")),
        "shards": 3,
        "waiting": None,
        "retiring": None,
        "moving": None,
    }
    assert reshard.recorded_redis({"dataShards": record}) == THREE
    assert reshard.moving_from({"dataShards": record}) is None
    assert reshard.recorded_redis({"dataShards": {"redis": "not json"}}) is None


@pytest.mark.parametrize(
    ("kept", "spec_shards", "want"),
    [(3, 1, 3), (3, 3, None), (3, 4, None), (None, 1, None)],
)
def test_retiring_only_while_the_spec_asks_for_fewer(
    kept: int | None, spec_shards: int, want: int | None
) -> None:
    spec = {**SPEC, "redis": {"managed": {"shards": spec_shards}}}
    status = status_of({"managed": {"shards": spec_shards}}, "w", retiring=kept)
    assert reshard.retiring(status, spec) == want


def test_uses_checks_env_and_rollout() -> None:
    urls = ["redis://h0:6379/0", "redis://h1:6379/0"]

    def deployment(value: str, updated: int, replicas: int = 2) -> dict[str, Any]:
        env = [{"name": "CHANNELAPP_REDIS_URLS", "value": value}]
        return {
            "metadata": {"generation": 2},
            "spec": {"template": {"spec": {"containers": [{"env": env}]}}},
            "status": {"observedGeneration": 2, "replicas": replicas, "updatedReplicas": updated},
        }

    assert reshard._uses(deployment(",".join(urls), 2), urls)
    assert not reshard._uses(deployment(",".join(urls), 1, replicas=3), urls)  # old pods left
    assert not reshard._uses(deployment(urls[0], 2), urls)
    assert reshard._uses(None, urls)


# --- conditions -----------------------------------------------------------------------------


def rolled(replicas: int) -> Workload:
    return Workload(replicas, replicas, replicas, replicas, 1, 1)


def test_status_while_waiting_shows_the_old_set_and_why() -> None:
    why = (
        "3 messages queued on shards 0-1; resharding from 2 to 3 shards waits until they are empty"
    )
    out = compute_status(
        StatusInputs(
            name="chat",
            namespace="ns",
            spec=SPEC,
            generation=3,
            previous=status_of(TWO, why),
            workloads={"protocol": rolled(1), "worker": rolled(1)},
            reading=DepthReading(depth=3),
            desired=1,
            now="2030-01-01T00:00:00Z",
        )
    )
    got = {c["type"]: (c["status"], c["reason"], c["message"]) for c in out["conditions"]}
    assert got["Progressing"] == (
        "False",
        "ReshardWaiting",
        f"the spec is not fully applied: {why}",
    )
    assert got["Degraded"][:2] == ("False", "AsExpected")
    assert got["Ready"][:2] == ("True", "AllReplicasReady")  # the old set serves
    assert out["shards"]["total"] == 2


def test_status_once_applied() -> None:
    out = compute_status(
        StatusInputs(
            name="chat",
            namespace="ns",
            spec=SPEC,
            generation=3,
            previous=status_of(THREE),
            workloads={"protocol": rolled(1), "worker": rolled(1)},
            reading=DepthReading(depth=0),
            desired=1,
        )
    )
    got = {c["type"]: (c["status"], c["reason"]) for c in out["conditions"]}
    assert got["Progressing"] == ("False", "RolloutComplete")
    assert out["shards"]["total"] == 3


# --- what real shards hold ------------------------------------------------------------------

PREFIX = "channelapp.ns.chat"


@pytest.mark.redis
def test_read_contents_counts_data_not_bookkeeping(redis_shards: list[RedisServer]) -> None:
    urls = [s.url for s in redis_shards[:2]]

    async def go() -> None:
        layer = RedisChannelLayer(urls, prefix=PREFIX)
        monitor = RedisMonitor(urls, prefix=PREFIX)
        try:
            # Bookkeeping only: a worker's report, liveness markers, statistics of a drained
            # channel. Empty.
            report: WorkerReport = {
                "in_flight": 0,
                "handled": 5,
                "busy_seconds": 0.1,
                "concurrency": 4,
            }
            await monitor.report_worker("w1", report, 60)
            await monitor.shards_that_lost_state()
            await layer.send("work", {"type": "x"})
            await layer.receive("work")
            contents = await reshard.read_contents(urls, PREFIX, None)
            assert [c.empty for c in contents] == [True, True]

            for i in range(3):
                await layer.send(f"queue{i}", {"type": "x"})
            await layer.group_add("room", "specific.abc!1")
            await layer.group_add("lobby", "specific.abc!2")
            await layer.group_add("empty", "specific.abc!3")
            await layer.group_discard("empty", "specific.abc!3")
            shard = layer.keys.shard("s")
            await shard.execute("SET", layer.keys.session("s"), "v")
            contents = await reshard.read_contents(urls, PREFIX, None)
            assert sum(c.queued for c in contents) == 3
            assert sum(c.groups for c in contents) == 2
            assert sum(c.sessions for c in contents) == 1
            assert [c.index for c in contents] == [0, 1]
            # Another app's keys on the same shards are not this app's.
            assert all(
                c.empty for c in await reshard.read_contents(urls, "channelapp.ns.other", None)
            )

            for i in range(3):
                await layer.receive(f"queue{i}")
            await layer.group_discard("room", "specific.abc!1")
            await layer.group_discard("lobby", "specific.abc!2")
            await shard.execute("DEL", layer.keys.session("s"))
            contents = await reshard.read_contents(urls, PREFIX, None)
            assert all(c.empty for c in contents)
        finally:
            await layer.close()
            await monitor.close()

    asyncio.run(go())


# --- against the control plane ----------------------------------------------------------------

PASSWORD = "reshard-test-password"


def _app(cluster: KubeCluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.kubectl_json("get", "channelapp", name, "-n", ns)


def _condition(app: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (app.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def _env_urls(cluster: KubeCluster, ns: str, deployment: str) -> str | None:
    """The Deployment's CHANNELAPP_REDIS_URLS (comma-separated)."""
    proc = cluster.kubectl("get", "deployment", deployment, "-n", ns, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    (container,) = json.loads(proc.stdout)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return str(env["CHANNELAPP_REDIS_URLS"])


def _events(cluster: KubeCluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    return list(
        cluster.kubectl_json(
            "get", "events", "-n", ns, "--field-selector",
            f"involvedObject.name={name},reason={reason}",
        )["items"]
    )  # fmt: skip


@pytest.mark.cluster
@pytest.mark.redis
def test_a_new_shard_count_waits_for_queued_messages_then_applies(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    with redis_servers(3, password=PASSWORD) as servers:
        urls = [f"redis://127.0.0.1:{s.port}/0" for s in servers]
        secret, app = load_example("chat-external-redis.yaml")
        secret["stringData"]["password"] = PASSWORD
        app["spec"]["redis"]["external"]["urls"] = urls[:2]
        name = str(app["metadata"]["name"])
        kube_cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([secret, app])
        )
        protocol = f"{name}-protocol"
        wait_for(lambda: _env_urls(kube_cluster, namespace, protocol) == ",".join(urls[:2]), 60,
                 what="protocol servers on 2 shards")  # fmt: skip
        wait_for(
            lambda: (
                (_app(kube_cluster, namespace, name).get("status") or {})
                .get("dataShards", {})
                .get("shards")
                == 2
            ),
            30,
            what="the shard set recorded",
        )
        prefix = app_prefix(namespace, name)

        async def fill() -> None:
            layer = RedisChannelLayer(urls[:2], prefix=prefix, password=PASSWORD)
            try:
                for i in range(3):
                    await layer.send(f"held.queue{i}", {"type": "x", "n": i})
                await layer.group_add("room", "specific.abc!1")
            finally:
                await layer.close()

        asyncio.run(fill())

        patch = {"spec": {"redis": {"external": {"urls": urls}}}}
        kube_cluster.kubectl("patch", "channelapp", name, "-n", namespace, "--type=merge",
                             "-p", json.dumps(patch))  # fmt: skip

        def waiting() -> dict[str, Any] | None:
            live = _app(kube_cluster, namespace, name)
            return (
                live if _condition(live, "Progressing").get("reason") == "ReshardWaiting" else None
            )

        live = wait_for(waiting, 60, what="Progressing=ReshardWaiting")
        message = _condition(live, "Progressing")["message"]
        assert "3 messages queued and 1 group with members" in message, message
        assert "resharding from 2 to 3 shards waits until they are empty" in message
        assert _condition(live, "Progressing")["status"] == "False"
        # Held: every pod keeps the old set, and keeps it while the shards hold data.
        time.sleep(RECHECKS * RESHARD_RECHECK)
        assert _env_urls(kube_cluster, namespace, protocol) == ",".join(urls[:2])
        worker = _env_urls(kube_cluster, namespace, f"{name}-worker")
        assert worker in (None, ",".join(urls[:2]))  # minReplicas 0: created at once all the same
        assert (_app(kube_cluster, namespace, name)["status"]["dataShards"]["shards"]) == 2
        (event,) = _events(kube_cluster, namespace, name, "ReshardWaiting")  # posted once
        assert event["type"] == "Warning" and "3 messages queued" in event["message"]

        async def drain() -> None:
            layer = RedisChannelLayer(urls[:2], prefix=prefix, password=PASSWORD)
            try:
                for i in range(3):
                    await asyncio.wait_for(layer.receive(f"held.queue{i}"), 10)
                await layer.group_discard("room", "specific.abc!1")
            finally:
                await layer.close()

        asyncio.run(drain())
        wait_for(lambda: _env_urls(kube_cluster, namespace, protocol) == ",".join(urls), 60,
                 what="protocol servers on 3 shards")  # fmt: skip
        live = wait_for(
            lambda: (
                (a := _app(kube_cluster, namespace, name))["status"]["dataShards"].get("shards")
                == 3
                and a
            ),
            30,
            what="the new shard set recorded",
        )
        # Done once every pod runs with the new set and what old ones wrote meanwhile moved.
        wait_for(
            lambda: (
                not (
                    (d := _app(kube_cluster, namespace, name)["status"]["dataShards"]).get(
                        "waiting"
                    )
                    or d.get("moving")
                )
            ),
            60,
            what="the pods on the new set, nothing left to move",
        )
        wait_for(
            lambda: (
                _condition(_app(kube_cluster, namespace, name), "Progressing").get("reason")
                != "ReshardWaiting"
            ),
            30,
            what="ReshardWaiting cleared",
        )
        assert _events(kube_cluster, namespace, name, "Resharded")


# Rechecks of the shards (RESHARD_RECHECK apart) a held change is watched through.
RECHECKS = 2


@pytest.mark.cluster
def test_managed_scale_in_keeps_the_shard_pods_it_cannot_read(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """kwok's Redis pods run nothing, so the operator cannot tell whether they are empty:
    scaling 2 shards in to 1 keeps the StatefulSet's pods and every pod's shard URLs."""
    (doc,) = load_example("chat.yaml")
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    wait_for(
        lambda: (
            (_app(kube_cluster, namespace, "chat").get("status") or {})
            .get("dataShards", {})
            .get("shards")
            == 2
        ),
        60,
        what="the shard set recorded",
    )
    sts = kube_cluster.kubectl_json("get", "statefulset", "chat-redis", "-n", namespace)
    pods = sts["spec"]["replicas"]
    before = _env_urls(kube_cluster, namespace, "chat-protocol")
    assert before is not None and "/shard-1/" in before
    patch = {"spec": {"redis": {"managed": {"shards": 1}}}}
    kube_cluster.kubectl("patch", "channelapp", "chat", "-n", namespace, "--type=merge",
                         "-p", json.dumps(patch))  # fmt: skip

    def waiting() -> dict[str, Any] | None:
        live = _app(kube_cluster, namespace, "chat")
        return live if _condition(live, "Progressing").get("reason") == "ReshardWaiting" else None

    live = wait_for(waiting, 60, what="Progressing=ReshardWaiting")
    assert "could not be read" in _condition(live, "Progressing")["message"]
    time.sleep(RECHECKS * RESHARD_RECHECK)
    sts = kube_cluster.kubectl_json("get", "statefulset", "chat-redis", "-n", namespace)
    assert sts["spec"]["replicas"] == pods
    assert _env_urls(kube_cluster, namespace, "chat-protocol") == before


# --- the plan: hold, move the pods, retire the shards ------------------------------------------


def managed(shards: int) -> dict[str, Any]:
    return {"managed": {"shards": shards, "replicas": 0}}


PLAN_CASES = [
    # (name, recorded redis, retiring, spec redis, pods on the new set, contents by shard,
    #  want: (applied shard count, keep_shards, waiting starts with, done starts with))
    ("no change", managed(2), None, managed(2), True, {},
     (2, None, None, None)),
    ("grow, shards empty: applied, the pods move", managed(1), None, managed(3), True,
     {0: ShardContents(0)},
     (3, None, "the app's pods move to 3 shards; what they write", "resharding from 1 to 3")),
    ("grow, a message waits: held on the old set", managed(1), None, managed(3), True,
     {0: ShardContents(0, queued=1)},
     (1, None, "1 message queued on shard 0", None)),
    ("shrink, empty: the pods move first, the shard pods stay", managed(3), None, managed(1),
     True, {i: ShardContents(i) for i in range(3)},
     (1, 3, "the app's pods move to 1 shard; shards 1-2 are removed once no pod uses them", "resharding from 3")),
    ("shrink, moving: pods still on the old set", managed(1), 3, managed(1), False, {},
     (1, 3, "the app's pods move to 1 shard;", None)),
    ("shrink, moved, a retiring shard holds a session", managed(1), 3, managed(1), True,
     {0: ShardContents(0, queued=9), 1: ShardContents(1), 2: ShardContents(2, sessions=1)},
     (1, 3, "1 session on shard 2", None)),
    ("shrink, moved, retiring shards empty: removed", managed(1), 3, managed(1), True,
     {0: ShardContents(0, queued=9), 1: ShardContents(1), 2: ShardContents(2)},
     (1, None, None, "shards 1-2 removed")),
]  # fmt: skip


@pytest.mark.parametrize("case", PLAN_CASES, ids=lambda c: c[0])
def test_plan(case: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    _, recorded, retiring, redis, pods_moved, contents, want = case
    status = status_of(recorded, "w" if retiring else None, retiring=retiring)

    async def fake_contents(
        kube: Any, app: str, ns: str, uid: str, redis_: Any, urls: list[str]
    ) -> tuple[list[ShardContents], str | None]:
        return [contents.get(i, ShardContents(i)) for i in range(len(urls))], None

    monkeypatch.setattr(reshard, "_contents", fake_contents)
    monkeypatch.setattr(reshard, "_sweep", nothing_swept)
    monkeypatch.setattr(reshard, "pods_use", lambda kube, app, ns, urls: pods_moved)
    spec = {**SPEC, "redis": redis}
    plan = asyncio.run(reshard.plan(None, "chat", "ns", "uid", spec, status))  # type: ignore[arg-type]
    shards, keep, waiting, done = want
    assert plan.spec["redis"]["managed"]["shards"] == shards
    assert plan.keep_shards == keep
    assert plan.record["retiring"] == keep
    if waiting is None:
        assert plan.waiting is None and plan.record["waiting"] is None
    else:
        assert plan.waiting is not None and plan.waiting.startswith(waiting), plan.waiting
        assert plan.record["waiting"] == plan.waiting
    if done is None:
        assert plan.done is None
    else:
        assert plan.done is not None and plan.done.startswith(done), plan.done


async def nothing_swept(*_: Any) -> tuple[Swept, None]:
    return Swept(), None


def test_an_applied_change_waits_for_the_pods_then_moves_what_they_wrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pods roll one at a time: what the old set's pods write meanwhile lands where the new
    set never looks, so the change is done only once they all moved and that was swept."""
    calls: list[tuple[list[str], list[str]]] = []

    async def fake_sweep(
        kube: Any, app: str, ns: str, uid: str, redis: Any, old: list[str], new: list[str]
    ) -> tuple[Swept, None]:
        calls.append((list(old), list(new)))
        return Swept(messages=7, members=2), None

    moved = {"now": False}
    monkeypatch.setattr(reshard, "_sweep", fake_sweep)
    monkeypatch.setattr(reshard, "pods_use", lambda kube, app, ns, urls: moved["now"])
    spec = {**SPEC, "redis": managed(3)}
    status = status_of(managed(3), "w", moving=managed(2))
    plan = asyncio.run(reshard.plan(None, "chat", "ns", "uid", spec, status))  # type: ignore[arg-type]
    assert plan.waiting is not None and plan.waiting.startswith("the app's pods move to 3")
    assert json.loads(plan.record["moving"]) == managed(2) and calls == []
    assert plan.spec["redis"] == managed(3)

    moved["now"] = True
    plan = asyncio.run(reshard.plan(None, "chat", "ns", "uid", spec, status))  # type: ignore[arg-type]
    assert plan.waiting is None and plan.record["moving"] is None
    assert plan.done is not None and plan.done.startswith("moved 7 queued message(s), 2 group")
    ((old, new),) = calls
    assert len(old) == 2 and len(new) == 3 and old == new[:2]


def test_a_sweep_that_cannot_read_the_shards_keeps_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: Any) -> tuple[None, str]:
        return None, "connection refused"

    monkeypatch.setattr(reshard, "_sweep", broken)
    monkeypatch.setattr(reshard, "pods_use", lambda kube, app, ns, urls: True)
    spec = {**SPEC, "redis": managed(3)}
    status = status_of(managed(3), "w", moving=managed(2))
    plan = asyncio.run(reshard.plan(None, "chat", "ns", "uid", spec, status))  # type: ignore[arg-type]
    assert plan.waiting is not None and "could not be read: connection refused" in plan.waiting
    assert json.loads(plan.record["moving"]) == managed(2)


def test_waiting_messages_say_one_shard_in_the_singular() -> None:
    assert reshard._removed_later(range(2, 3)) == (
        "shard 2 is removed once no pod uses it and it is empty"
    )
    assert reshard._removed_later(range(1, 3)) == (
        "shards 1-2 are removed once no pod uses them and they are empty"
    )
    assert reshard._pods_move(1) == "the app's pods move to 1 shard"
