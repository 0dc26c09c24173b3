"""Replicated managed shards as builders.py builds them (spec.redis.managed.replicas), and
the scripts their pods run (redis_scripts.py) on real redis-server processes."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml
from channelapp.layer.sentinel import parse_sentinel_url
from channelapp_operator import builders, redis_scripts
from channelapp_operator import names as n

from devtools.kube import KubeCluster
from devtools.operator import OperatorProcess, load_example
from devtools.polling import wait_for

SPEC: dict[str, Any] = {
    "image": "example/chat:1",
    "app": "chat.app:app",
    "redis": {"managed": {"shards": 3, "replicas": 1, "sentinels": 3, "image": "redis:7.4"}},
}


def spec_with(**managed: Any) -> dict[str, Any]:
    return {**SPEC, "redis": {"managed": {**SPEC["redis"]["managed"], **managed}}}


def by_name(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m["kind"], m["metadata"]["name"]): m for m in builders.children("chat", "ns", "u", spec)
    }


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_replicated_shards_are_found_through_the_apps_sentinels() -> None:
    urls = builders.shard_urls("chat", "ns", SPEC)
    hosts = ",".join(f"chat-redis-sentinel-{m}.chat-redis.ns.svc:26379" for m in range(3))
    assert urls == [f"redis+sentinel://{hosts}/shard-{i}/0" for i in range(3)]
    # The layer's parser reads them; no password in them (the pods get it from the Secret).
    target = parse_sentinel_url(urls[2])
    assert target.master_name == n.redis_master_name(2) == "shard-2"
    assert target.sentinels[0] == ("chat-redis-sentinel-0.chat-redis.ns.svc", 26379)
    assert target.password is None and target.sentinel_password is None
    assert builders.env_urls("chat", "ns", SPEC) == urls
    env = {e["name"]: e for e in builders.operator_env("chat", "ns", SPEC)}
    assert env["CHANNELAPP_REDIS_URLS"]["value"] == ",".join(urls)
    assert env["CHANNELAPP_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "chat-secrets",
        "key": n.SECRET_PASSWORD_KEY,
    }
    # Five Sentinels: five addresses; no replicas: plain URLs, one server per shard.
    assert builders.shard_urls("chat", "ns", spec_with(sentinels=5))[0].count(":26379") == 5
    assert builders.shard_urls("chat", "ns", spec_with(replicas=0)) == [
        f"redis://chat-redis-{i}.chat-redis.ns.svc:6379/0" for i in range(3)
    ]


def test_replicated_children_are_the_shard_set_the_sentinels_and_their_budgets() -> None:
    children = builders.children("chat", "ns", "u", SPEC)
    redis_part = [(m["kind"], m["metadata"]["name"]) for m in children[:5]]
    assert redis_part == [
        ("Service", "chat-redis"),
        ("StatefulSet", "chat-redis"),
        ("PodDisruptionBudget", "chat-redis"),
        ("StatefulSet", "chat-redis-sentinel"),
        ("PodDisruptionBudget", "chat-redis-sentinel"),
    ]
    for m in children:
        (owner,) = m["metadata"]["ownerReferences"]
        assert owner["uid"] == "u" and owner["controller"] is True
    # Without replicas, no Sentinels: the children of before.
    plain = [(m["kind"], m["metadata"]["name"]) for m in builders.children("chat", "ns", "u",
             spec_with(replicas=0))]  # fmt: skip
    assert ("StatefulSet", "chat-redis-sentinel") not in plain
    assert ("StatefulSet", "chat-redis") in plain
    # Switching managed Redis off removes the Sentinels with the rest.
    external = {**SPEC, "redis": {"external": {"urls": ["redis://r:6379/0"]}}}
    stale = builders.stale_children(external)
    assert ("StatefulSet", n.SENTINEL) in stale and ("PodDisruptionBudget", n.SENTINEL) in stale
    assert {n.stale_child_name("chat", c) for _, c in stale} == {
        "chat-redis",
        "chat-redis-sentinel",
    }
    assert builders.stale_children(SPEC) == builders.stale_children(spec_with(replicas=0)) == []


def test_the_shard_statefulset_holds_replicas_plus_one_pods_per_shard() -> None:
    sts = by_name(SPEC)[("StatefulSet", "chat-redis")]
    spec = sts["spec"]
    assert spec["replicas"] == 3 * 2
    # The selector is the one of before (immutable), the pods are also named under the Service.
    assert spec["selector"] == {"matchLabels": n.selector("chat", n.REDIS)}
    assert spec["serviceName"] == "chat-redis"
    labels = spec["template"]["metadata"]["labels"]
    assert labels[n.LABEL_REDIS_DNS] == "true" and labels[n.LABEL_COMPONENT] == n.REDIS
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["sh", "-c", redis_scripts.REDIS_START]
    assert "args" not in container
    env = env_of(container)
    assert env["REDIS_REPLICAS"] == "1" and env["REDIS_SHARDS"] == "3"
    assert env["REDIS_DOMAIN"] == "chat-redis.ns.svc" and env["REDIS_NAME"] == "chat-redis"
    assert env["SENTINEL_HOSTS"].split() == [
        f"chat-redis-sentinel-{m}.chat-redis.ns.svc" for m in range(3)
    ]
    assert env["SENTINEL_QUORUM"] == "2"
    assert env["MIN_REPLICAS_TO_WRITE"] == "0"  # one replica: the master alone acknowledges
    two = by_name(spec_with(replicas=2))[("StatefulSet", "chat-redis")]
    assert env_of(two["spec"]["template"]["spec"]["containers"][0])["MIN_REPLICAS_TO_WRITE"] == "1"
    assert 2000 <= int(env["SENTINEL_DOWN_AFTER_MS"]) <= 5000
    secret_ref = {"secretKeyRef": {"name": "chat-secrets", "key": n.SECRET_PASSWORD_KEY}}
    assert env["REDIS_PASSWORD"] == env["REDISCLI_AUTH"] == secret_ref
    # The password is never in the manifest itself.
    assert "secret" not in str(env["SENTINEL_HOSTS"]) and "requirepass" not in str(env)
    assert container["readinessProbe"]["exec"]["command"] == ["sh", "-c", redis_scripts.REDIS_READY]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert pod["volumes"] == [{"name": "data", "emptyDir": {}}]
    # A master hands over to its replica before it stops.
    stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert stop == ["sh", "-c", redis_scripts.REDIS_PRE_STOP]
    # Spread over nodes where they allow, never required (one node still runs them all).
    anti = pod["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"] == {"matchLabels": n.selector("chat", n.REDIS)}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    # Two replicas per shard: three pods per shard.
    assert by_name(spec_with(replicas=2))[("StatefulSet", "chat-redis")]["spec"]["replicas"] == 9


def test_without_replicas_the_shard_statefulset_is_as_before() -> None:
    sts = by_name(spec_with(replicas=0))[("StatefulSet", "chat-redis")]
    assert sts["spec"]["replicas"] == 3
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["redis-server", "--requirepass", "$(REDIS_PASSWORD)"]
    assert "command" not in container and "affinity" not in sts["spec"]["template"]["spec"]
    assert n.LABEL_REDIS_DNS not in sts["spec"]["template"]["metadata"]["labels"]
    svc = by_name(spec_with(replicas=0))[("Service", "chat-redis")]
    assert svc["spec"]["selector"] == n.selector("chat", n.REDIS)
    assert [p["name"] for p in svc["spec"]["ports"]] == ["redis"]


def test_the_headless_service_names_shard_and_sentinel_pods() -> None:
    svc = by_name(SPEC)[("Service", "chat-redis")]["spec"]
    assert svc["clusterIP"] == "None" and svc["publishNotReadyAddresses"] is True
    assert svc["selector"] == {n.LABEL_INSTANCE: "chat", n.LABEL_REDIS_DNS: "true"}
    assert [(p["name"], p["port"]) for p in svc["ports"]] == [("redis", 6379), ("sentinel", 26379)]
    # Only the shard and Sentinel pods carry the label the Service selects.
    for key, manifest in by_name(SPEC).items():
        template = manifest.get("spec", {}).get("template")
        if template is None:
            continue
        selected = template["metadata"]["labels"].get(n.LABEL_REDIS_DNS) == "true"
        assert selected == (key in {("StatefulSet", "chat-redis"),
                                    ("StatefulSet", "chat-redis-sentinel")}), key  # fmt: skip


def test_the_sentinel_statefulset() -> None:
    sts = by_name(spec_with(sentinels=5))[("StatefulSet", "chat-redis-sentinel")]
    spec = sts["spec"]
    assert spec["replicas"] == 5 and spec["serviceName"] == "chat-redis"
    assert spec["selector"] == {"matchLabels": n.selector("chat", n.SENTINEL)}
    assert sts["metadata"]["labels"][n.LABEL_COMPONENT] == n.SENTINEL
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "redis:7.4"
    assert container["command"] == ["sh", "-c", redis_scripts.SENTINEL_START]
    env = env_of(container)
    assert env["SENTINEL_QUORUM"] == "3" and env["REDIS_SHARDS"] == "3"
    assert container["ports"] == [{"name": "sentinel", "containerPort": 26379, "protocol": "TCP"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "config", "mountPath": "/sentinel"}]
    assert pod["volumes"] == [{"name": "config", "emptyDir": {}}]
    ready = container["readinessProbe"]["exec"]["command"]
    assert ready == ["sh", "-c", redis_scripts.SENTINEL_READY]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"] == {
        "matchLabels": n.selector("chat", n.SENTINEL)
    }
    pdb = by_name(SPEC)[("PodDisruptionBudget", "chat-redis-sentinel")]
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": n.selector("chat", n.SENTINEL)},
    }


def test_child_names_of_two_apps_with_replicated_shards_never_collide() -> None:
    """With replicated shards an app NAME also has StatefulSet and budget NAME-redis-sentinel
    and pods NAME-redis-O and NAME-redis-sentinel-M, all named under the headless Service
    NAME-redis (no Service of their own, so no new Service name another app could take)."""

    def children(app: str) -> set[tuple[str, str]]:
        return {(m["kind"], m["metadata"]["name"]) for m in builders.children(app, "ns", "u", SPEC)}

    def pod_names(app: str) -> set[str]:
        shards = 3 * 2
        return {f"{n.redis_name(app)}-{o}" for o in range(shards)} | {
            f"{n.sentinel_name(app)}-{m}" for m in range(7)
        }

    suffixes = ["", "-redis", "-protocol", "-worker", "-secrets", "-sentinel", "-0", "-1"]
    candidates = {f"x{a}{b}{c}" for a in suffixes for b in suffixes for c in suffixes}
    candidates = {c for c in candidates if not c.endswith("-redis")}  # the CRD refuses those
    objects = {a: children(a) for a in candidates}
    pods = {a: pod_names(a) for a in candidates}
    for a in candidates:
        for b in candidates - {a}:
            assert not objects[a] & objects[b], (a, b, objects[a] & objects[b])
            assert not pods[a] & pods[b], (a, b)
    # What the CRD's -redis rule is for: app x-redis's Service is app x's Redis Service.
    assert children("x") & children("x-redis")


# --- the scripts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    ["REDIS_START", "REDIS_READY", "REDIS_PRE_STOP", "SENTINEL_START", "SENTINEL_READY"],
)
def test_scripts_are_valid_posix_shell(script: str) -> None:
    """``sh -n`` (dash here, busybox ash in Alpine images) parses each script."""
    proc = subprocess.run(
        ["sh", "-n", "-c", getattr(redis_scripts, script)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_scripts_use_the_operators_master_names_and_the_sentinel_acl() -> None:
    assert '"shard-$shard"' in redis_scripts.REDIS_START
    assert '"shard-$shard"' in redis_scripts.SENTINEL_READY
    assert 'name="shard-$shard"' in redis_scripts.SENTINEL_START
    assert n.redis_master_name(7) == "shard-7"
    # Anyone may ask where a master is; failing over takes the admin user (the app password).
    default_user = next(
        line
        for line in redis_scripts.SENTINEL_START.splitlines()
        if line.startswith("user default")
    )
    assert "-@all" in default_user and "+sentinel|get-master-addr-by-name" in default_user
    assert "+@all" not in default_user and "failover" not in default_user
    assert '--user "$SENTINEL_ADMIN"' in redis_scripts.REDIS_START


# --- against the control plane ----------------------------------------------------------


def get(cluster: KubeCluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


@pytest.mark.cluster
def test_a_replicated_app_gets_its_sentinels_and_keeps_its_replica_count(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    (doc,) = load_example("chat.yaml")
    doc["spec"]["redis"]["managed"].update({"shards": 2, "replicas": 1, "sentinels": 3})
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    app = kube_cluster.kubectl_json("get", "channelapp", "chat", "-n", namespace)
    uid = app["metadata"]["uid"]
    wanted = [
        ("service", "chat-redis"),
        ("statefulset", "chat-redis"),
        ("poddisruptionbudget", "chat-redis"),
        ("statefulset", "chat-redis-sentinel"),
        ("poddisruptionbudget", "chat-redis-sentinel"),
    ]
    found = {}
    for kind, name in wanted:
        found[(kind, name)] = obj = wait_for(
            lambda k=kind, m=name: get(kube_cluster, namespace, k, m), 30, what=f"{kind}/{name}"
        )
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"]) == (uid, True)
    assert found[("statefulset", "chat-redis")]["spec"]["replicas"] == 4
    assert found[("statefulset", "chat-redis-sentinel")]["spec"]["replicas"] == 3
    svc = found[("service", "chat-redis")]["spec"]
    assert svc["selector"] == {n.LABEL_INSTANCE: "chat", n.LABEL_REDIS_DNS: "true"}
    worker = wait_for(lambda: get(kube_cluster, namespace, "deployment", "chat-worker"), 30)
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CHANNELAPP_REDIS_URLS"]["value"] == ",".join(
        builders.shard_urls("chat", namespace, app["spec"])
    )
    assert env["CHANNELAPP_REDIS_URLS"]["value"].startswith("redis+sentinel://")

    # The replica count stays as created; the Sentinels are an odd number.
    for managed, words in (
        ({"replicas": 2}, "replicas cannot change once set"),
        ({"sentinels": 4}, "sentinels must be odd"),
    ):
        patch = json.dumps({"spec": {"redis": {"managed": managed}}})
        refused = kube_cluster.kubectl(
            "patch", "channelapp", "chat", "-n", namespace, "--type=merge", "-p", patch,
            check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and words in refused.stderr, refused.stderr


def test_a_split_sentinel_vote_still_promotes_before_the_apps_stop_waiting() -> None:
    """Sentinels that detect a dead master at once can split their vote (seen on the real
    node: -failover-abort-not-elected, a new try 17 s later, sockets closed with 1013). Each
    Sentinel tries again two failover-timeouts after its own try, so detection, one split
    vote and a promotion (about a second) must fit in the wait the apps' layer gives a
    failover (their URLs name none: the default)."""
    from channelapp.layer.sentinel import DEFAULT_FAILOVER_TIMEOUT

    detected = builders.SENTINEL_DOWN_AFTER_MS / 1000 + 0.5
    second_try = 2 * builders.SENTINEL_FAILOVER_TIMEOUT_MS / 1000
    assert "failover_timeout" not in builders.shard_urls("chat", "ns", SPEC)[0]
    assert detected + second_try + 1.0 < DEFAULT_FAILOVER_TIMEOUT
    sentinels = by_name(SPEC)[("StatefulSet", "chat-redis-sentinel")]
    env = env_of(sentinels["spec"]["template"]["spec"]["containers"][0])
    assert env["SENTINEL_FAILOVER_TIMEOUT_MS"] == str(builders.SENTINEL_FAILOVER_TIMEOUT_MS)
