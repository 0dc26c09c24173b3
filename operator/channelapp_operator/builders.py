"""Child objects of a ChannelApp, built as plain manifests (pure functions, no I/O).

Everything here is applied with server-side apply under the operator's field
manager, so a manifest lists exactly the fields the operator owns. The worker
Deployment leaves ``spec.replicas`` out: the autoscaler owns that field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from channelapp import __version__
from channelapp.layer.keyspace import app_prefix

from channelapp_operator import names as n
from channelapp_operator import redis_scripts
from channelapp_operator.redis_urls import has_password, redact_url

Manifest = dict[str, Any]
Spec = dict[str, Any]

# A protocol pod being stopped first sleeps this long (preStop), still serving, so that the
# Endpoints controller and every node's proxy drop it before it stops accepting: a client
# routed to it meanwhile is served instead of refused. Those updates reach the proxies within
# moments on a healthy cluster; 5 s leaves room for a busy one and adds little to a rollout.
PRESTOP_SECONDS = 5
# Seconds the protocol pod's grace period leaves after the preStop sleep and the drain: the
# sockets' closing handshakes (up to 2 s) and the process's own shutdown.
DRAIN_MARGIN_SECONDS = 10
DRAIN_SECONDS_DEFAULT = 30
# Protocol pods run the channelapp runtime the operator was released with, not the app's
# image: they never load the app, so an app deploy leaves them (and their sockets) alone.
# The chart sets the variable from runtimeImage.repository and runtimeImage.tag.
RUNTIME_IMAGE_ENV = "CHANNELAPP_RUNTIME_IMAGE"
RUNTIME_IMAGE_REPOSITORY = "ghcr.io/channelapp/channelapp"
# Replicated managed shards (the CRD's defaults): replicas per shard master, Sentinels per
# app. A master unreachable for SENTINEL_DOWN_AFTER_MS is failed over by the Sentinels.
REDIS_REPLICAS_DEFAULT = 1
SENTINELS_DEFAULT = 3
SENTINEL_DOWN_AFTER_MS = 3000
# Sentinels that see the master down together can split their vote; each tries again twice
# this long after its own try (and gives up waiting for votes after this long). 4 s keeps a
# failover with one split vote (about 3 + 8 + 1 s) within the 15 s the apps' layer waits for
# a new master before it refuses sends.
SENTINEL_FAILOVER_TIMEOUT_MS = 4000
SENTINEL_ADMIN_USER = "channelapp"


def owner_reference(app: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{n.GROUP}/{n.VERSION}",
        "kind": n.KIND,
        "name": app,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(app: str, namespace: str, uid: str, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": n.labels(app, component),
        "ownerReferences": [owner_reference(app, uid)],
    }


class SpecRefused(ValueError):
    """The spec asks for something the operator will not build; ``str()`` says what."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def shard_urls(app: str, namespace: str, spec: Spec) -> list[str]:
    """Redis URLs the app and the operator use, one per shard, in shard order."""
    redis = spec.get("redis") or {}
    if "external" in redis:
        return list(redis["external"]["urls"])
    shards = int((redis.get("managed") or {}).get("shards", 1))
    host = n.redis_name(app)
    if redis_replicas(spec):
        # Each shard by its master name, through the app's Sentinels (no password in the
        # URL: the shards' is CHANNELAPP_REDIS_PASSWORD, the Sentinels ask none to find one).
        sentinels = ",".join(f"{h}:{n.SENTINEL_PORT}" for h in sentinel_hosts(app, namespace, spec))
        return [f"redis+sentinel://{sentinels}/{n.redis_master_name(i)}/0" for i in range(shards)]
    return [f"redis://{host}-{i}.{host}.{namespace}.svc:{n.REDIS_PORT}/0" for i in range(shards)]


def redis_replicas(spec: Spec) -> int:
    """Replicas per managed shard (0: external Redis, or one pod per shard as before)."""
    managed = (spec.get("redis") or {}).get("managed")
    if managed is None:
        return 0
    return int(managed.get("replicas", REDIS_REPLICAS_DEFAULT))


def sentinel_count(spec: Spec) -> int:
    return int(((spec.get("redis") or {}).get("managed") or {}).get("sentinels", SENTINELS_DEFAULT))


def min_replicas_to_write(spec: Spec) -> int:
    """A master refuses writes (``NOREPLICAS``, which the layer sends again to the new
    master) with no replica in sync only when it has two or more: then a demoted master
    stops taking writes once its replica is promoted, and a promoted one still has a
    replica. With one replica, refusing would stop the shard whenever that replica
    restarts: writes are acknowledged by the master alone (the layer never WAITs)."""
    return 1 if redis_replicas(spec) >= 2 else 0


def redis_domain(app: str, namespace: str) -> str:
    """Every managed shard and Sentinel pod is ``<pod>.<this>`` (the headless Service)."""
    return f"{n.redis_name(app)}.{namespace}.svc"


def sentinel_hosts(app: str, namespace: str, spec: Spec) -> list[str]:
    domain = redis_domain(app, namespace)
    return [f"{n.sentinel_name(app)}-{m}.{domain}" for m in range(sentinel_count(spec))]


def password_ref(app: str, spec: Spec) -> dict[str, str] | None:
    """Secret key holding the Redis password (None: external Redis without a password)."""
    redis = spec.get("redis") or {}
    if "external" in redis:
        ref = redis["external"].get("passwordSecretRef")
        if not ref:
            return None
        return {"name": ref["name"], "key": ref.get("key", "password")}
    return {"name": n.secret_name(app), "key": n.SECRET_PASSWORD_KEY}


def env_urls(app: str, namespace: str, spec: Spec) -> list[str]:
    """The shard URLs for a pod's env; a URL carrying a password is refused, since the
    author (and anyone who may read the Deployment) would read it in clear."""
    urls = shard_urls(app, namespace, spec)
    with_password = [redact_url(u) for u in urls if has_password(u)]
    if with_password:
        raise SpecRefused(
            "PasswordInURL",
            f"redis.external.urls carry a password ({', '.join(with_password)}): "
            "put it in a Secret and name it in redis.external.passwordSecretRef",
        )
    return urls


def pod_identity(spec: Spec) -> dict[str, Any]:
    """No ServiceAccount token in app pods unless the spec names the ServiceAccount to use."""
    account = spec.get("serviceAccountName")
    if account:
        return {"serviceAccountName": str(account), "automountServiceAccountToken": True}
    return {"automountServiceAccountToken": False}


def runtime_image(environ: Mapping[str, str] | None = None) -> str:
    """The protocol pods' image: the operator's CHANNELAPP_RUNTIME_IMAGE, else the runtime
    image of the operator's own version."""
    env = os.environ if environ is None else environ
    return env.get(RUNTIME_IMAGE_ENV) or f"{RUNTIME_IMAGE_REPOSITORY}:{__version__}"


def operator_env(app: str, namespace: str, spec: Spec) -> list[dict[str, Any]]:
    """What every app container gets from the operator: Redis, key prefix, secrets, origins."""
    env: list[dict[str, Any]] = [
        {"name": "CHANNELAPP_REDIS_URLS", "value": ",".join(env_urls(app, namespace, spec))},
        # Apps sharing one Redis keep apart; the operator reads depth under the same prefix.
        {"name": "CHANNELAPP_KEY_PREFIX", "value": app_prefix(namespace, app)},
        {
            "name": "CHANNELAPP_SECRET_KEY",
            "valueFrom": {
                "secretKeyRef": {"name": n.secret_name(app), "key": n.SECRET_SESSION_KEY}
            },
        },
    ]
    ref = password_ref(app, spec)
    if ref is not None:
        env.append({"name": "CHANNELAPP_REDIS_PASSWORD", "valueFrom": {"secretKeyRef": ref}})
    origins = (spec.get("protocol") or {}).get("allowedOrigins") or []
    if origins:
        env.append({"name": "CHANNELAPP_ALLOWED_ORIGINS", "value": ",".join(origins)})
    return env


def app_env(app: str, namespace: str, spec: Spec) -> list[dict[str, Any]]:
    """A worker's env: the operator's, then spec.env (protocol pods get spec.protocol.env)."""
    return [*operator_env(app, namespace, spec), *(spec.get("env") or [])]


def pod_security_context() -> dict[str, Any]:
    """What Pod Security ``restricted`` asks of a pod: non-root, the runtime's seccomp profile."""
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _app_container(
    name: str,
    image: tuple[str, str],
    args: list[str],
    env: list[dict[str, Any]],
    port: tuple[str, int],
    resources: dict[str, Any] | None,
) -> dict[str, Any]:
    """A channelapp container (image, pull policy); probes hit the /readyz and /healthz of
    its one port."""
    port_name, number = port
    return {
        "name": name,
        "image": image[0],
        "imagePullPolicy": image[1],
        "args": args,
        "env": env,
        "ports": [{"name": port_name, "containerPort": number, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port_name}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port_name}, "periodSeconds": 10},
        "resources": resources or {},
        "securityContext": _security_context(),
    }


ASGI_PREFIX = "asgi:"


def asgi_target(spec: Mapping[str, Any]) -> str | None:
    """``MODULE:ATTR`` of a spec whose ``app`` is ``asgi:MODULE:ATTR`` (a Channels 4 project
    served in-process by the protocol pods), else None."""
    app = str(spec.get("app") or "")
    return app[len(ASGI_PREFIX) :] if app.startswith(ASGI_PREFIX) else None


def wants_workers(spec: Mapping[str, Any]) -> bool:
    """Worker pods: always for a channelapp app; for an ASGI project only to consume its
    background channels (``workers.channels``, run by ``channelapp runworker``)."""
    return asgi_target(spec) is None or bool((spec.get("workers") or {}).get("channels"))


def protocol_deployment(app: str, namespace: str, uid: str, spec: Spec) -> Manifest:
    proto = spec.get("protocol") or {}
    port = int(proto.get("port", 8000))
    drain = int(proto.get("drainSeconds", DRAIN_SECONDS_DEFAULT))
    # Nothing of spec.image, spec.app or spec.env: the pod template stays the same across
    # app deploys. The app's protocol settings come from its workers (through Redis).
    env = [
        # On SIGTERM sockets are closed with 1012 spread over this window (after preStop).
        {"name": "CHANNELAPP_DRAIN_SECONDS", "value": str(drain)},
        *operator_env(app, namespace, spec),
        *(proto.get("env") or []),
    ]
    image = (proto.get("image") or runtime_image(), proto.get("imagePullPolicy", "IfNotPresent"))
    args = ["protocol", "--host", "0.0.0.0", "--port", str(port)]
    target = asgi_target(spec)
    if target is not None:
        # An ASGI project is served in-process: the app's image, its env, and an app deploy
        # rolls these pods (they drain gently, as above).
        env = [env[0], *app_env(app, namespace, spec), *(proto.get("env") or [])]
        image = (spec["image"], spec.get("imagePullPolicy", "IfNotPresent"))
        args = ["asgi", target, "--host", "0.0.0.0", "--port", str(port)]
    container = _app_container(
        "protocol",
        image,
        args,
        env,
        ("http", port),
        proto.get("resources"),
    )
    grace = PRESTOP_SECONDS + drain + DRAIN_MARGIN_SECONDS
    # The kubelet's own sleep: no binary needed in the image.
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(app, namespace, uid, n.protocol_name(app), n.PROTOCOL),
        "spec": {
            "replicas": int(proto.get("replicas", 1)),
            "selector": {"matchLabels": n.selector(app, n.PROTOCOL)},
            # A new pod is ready before an old one stops: serving capacity never drops, and
            # old pods' clients are sent away a pod at a time.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": n.labels(app, n.PROTOCOL)},
                "spec": {
                    **pod_identity(spec),
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "terminationGracePeriodSeconds": grace,
                },
            },
        },
    }


def protocol_service(app: str, namespace: str, uid: str, spec: Spec) -> Manifest:
    proto = spec.get("protocol") or {}
    port = int(proto.get("port", 8000))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app, namespace, uid, n.service_name(app), n.PROTOCOL),
        "spec": {
            "type": proto.get("serviceType", "ClusterIP"),
            "selector": n.selector(app, n.PROTOCOL),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def worker_deployment(app: str, namespace: str, uid: str, spec: Spec) -> Manifest:
    workers = spec.get("workers") or {}
    grace = int(workers.get("terminationGracePeriodSeconds", 30))
    env = [
        {"name": "CHANNELAPP_WORKER_CONCURRENCY", "value": str(workers.get("concurrency", 64))},
        # Leave a margin inside the grace period so the drain ends before SIGKILL.
        {"name": "CHANNELAPP_SHUTDOWN_TIMEOUT", "value": str(max(1, grace - 5))},
        *app_env(app, namespace, spec),
    ]
    args = ["worker", spec["app"]]
    target = asgi_target(spec)
    if target is not None:  # Channels' runworker: the project's consumers of these channels
        args = ["runworker", target, *workers.get("channels", []),
                "--concurrency", str(workers.get("concurrency", 64))]  # fmt: skip
    container = _app_container(
        "worker",
        (spec["image"], spec.get("imagePullPolicy", "IfNotPresent")),
        [*args, "--metrics-host", "0.0.0.0", "--metrics-port", str(n.WORKER_METRICS_PORT)],
        env,
        ("metrics", n.WORKER_METRICS_PORT),
        workers.get("resources"),
    )  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(app, namespace, uid, n.worker_name(app), n.WORKER),
        "spec": {
            "selector": {"matchLabels": n.selector(app, n.WORKER)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": n.labels(app, n.WORKER)},
                "spec": {
                    **pod_identity(spec),
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "terminationGracePeriodSeconds": grace,
                },
            },
        },
    }


def redis_service(app: str, namespace: str, uid: str, spec: Spec | None = None) -> Manifest:
    """Headless Service giving each shard pod (and each Sentinel pod, when the shards are
    replicated) a stable DNS name."""
    ports = [{"name": "redis", "port": n.REDIS_PORT, "targetPort": "redis"}]
    selector = n.selector(app, n.REDIS)
    if spec is not None and redis_replicas(spec):
        selector = {n.LABEL_INSTANCE: app, n.LABEL_REDIS_DNS: "true"}
        ports.append({"name": "sentinel", "port": n.SENTINEL_PORT, "targetPort": "sentinel"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app, namespace, uid, n.redis_name(app), n.REDIS),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": ports,
        },
    }


def _password_env(app: str) -> list[dict[str, Any]]:
    ref = {"secretKeyRef": {"name": n.secret_name(app), "key": n.SECRET_PASSWORD_KEY}}
    return [{"name": "REDIS_PASSWORD", "valueFrom": ref}]


def _redis_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 999,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _spread(app: str, component: str) -> dict[str, Any]:
    """Pods of the component on different nodes where the nodes allow (preferred only: one
    node still runs them all)."""
    term = {
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": n.selector(app, component)},
            "topologyKey": "kubernetes.io/hostname",
        },
    }
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [term]}}


def _replicated_env(app: str, namespace: str, spec: Spec) -> list[dict[str, Any]]:
    """What the replicated shard and Sentinel scripts read (redis_scripts.py)."""
    ref = {"secretKeyRef": {"name": n.secret_name(app), "key": n.SECRET_PASSWORD_KEY}}
    managed = spec["redis"]["managed"]
    values = {
        "REDIS_NAME": n.redis_name(app),
        "REDIS_DOMAIN": redis_domain(app, namespace),
        "REDIS_REPLICAS": str(redis_replicas(spec)),
        "REDIS_SHARDS": str(int(managed.get("shards", 1))),
        "SENTINEL_HOSTS": " ".join(sentinel_hosts(app, namespace, spec)),
        "SENTINEL_ADMIN": SENTINEL_ADMIN_USER,
        "SENTINEL_QUORUM": str(sentinel_count(spec) // 2 + 1),
        "SENTINEL_DOWN_AFTER_MS": str(SENTINEL_DOWN_AFTER_MS),
        "SENTINEL_FAILOVER_TIMEOUT_MS": str(SENTINEL_FAILOVER_TIMEOUT_MS),
        "MIN_REPLICAS_TO_WRITE": str(min_replicas_to_write(spec)),
    }
    return [
        *_password_env(app),
        {"name": "REDISCLI_AUTH", "valueFrom": ref},
        *({"name": k, "value": v} for k, v in values.items()),
    ]


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def redis_statefulset(app: str, namespace: str, uid: str, spec: Spec) -> Manifest:
    """The managed Redis servers. Without replicas: independent servers, one per shard.
    With ``replicas`` r: r + 1 pods per shard (consecutive ordinals), one master and r
    replicas, failed over by the app's Sentinels (redis_scripts.py)."""
    managed = spec["redis"]["managed"]
    replicas = redis_replicas(spec)
    shards = int(managed.get("shards", 1))
    container: dict[str, Any] = {
        "name": "redis",
        "image": managed.get("image", "redis:7.4-alpine"),
        "args": [
            "redis-server",
            "--requirepass",
            "$(REDIS_PASSWORD)",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ],
        "env": _password_env(app),
        "ports": [{"name": "redis", "containerPort": n.REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {
                "command": [
                    "sh",
                    "-c",
                    'redis-cli --no-auth-warning -a "$REDIS_PASSWORD" ping | grep -q PONG',
                ]
            },
            "periodSeconds": 5,
        },
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10},
        "resources": managed.get("resources") or {},
        "securityContext": _redis_security_context(),
    }
    labels = n.labels(app, n.REDIS)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
    }
    if replicas:
        container.pop("args")
        container["command"] = _sh(redis_scripts.REDIS_START)
        container["env"] = _replicated_env(app, namespace, spec)
        container["readinessProbe"] = {
            "exec": {"command": _sh(redis_scripts.REDIS_READY)},
            "periodSeconds": 2,
            "timeoutSeconds": 4,
        }
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        container["lifecycle"] = {
            "preStop": {"exec": {"command": _sh(redis_scripts.REDIS_PRE_STOP)}}
        }
        labels = {**labels, n.LABEL_REDIS_DNS: "true"}
        pod_spec["volumes"] = [{"name": "data", "emptyDir": {}}]
        pod_spec["affinity"] = _spread(app, n.REDIS)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(app, namespace, uid, n.redis_name(app), n.REDIS),
        "spec": {
            "serviceName": n.redis_name(app),
            "replicas": shards * (replicas + 1),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": n.selector(app, n.REDIS)},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def redis_sentinel_statefulset(app: str, namespace: str, uid: str, spec: Spec) -> Manifest:
    """The app's Sentinels (replicated shards only): each monitors every shard by its master
    name and, with a majority agreeing, promotes a replica when a master is down. Their
    config is written at start into an emptyDir (Sentinel rewrites it as it learns)."""
    managed = spec["redis"]["managed"]
    ready = {"exec": {"command": _sh(redis_scripts.SENTINEL_READY)}}
    container = {
        "name": "sentinel",
        "image": managed.get("image", "redis:7.4-alpine"),
        "command": _sh(redis_scripts.SENTINEL_START),
        "env": _replicated_env(app, namespace, spec),
        "ports": [{"name": "sentinel", "containerPort": n.SENTINEL_PORT, "protocol": "TCP"}],
        "readinessProbe": {**ready, "periodSeconds": 5, "timeoutSeconds": 4},
        "livenessProbe": {"tcpSocket": {"port": "sentinel"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "config", "mountPath": "/sentinel"}],
        "resources": {},
        "securityContext": {**_redis_security_context(), "readOnlyRootFilesystem": True},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(app, namespace, uid, n.sentinel_name(app), n.SENTINEL),
        "spec": {
            "serviceName": n.redis_name(app),
            "replicas": sentinel_count(spec),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": n.selector(app, n.SENTINEL)},
            "template": {
                "metadata": {"labels": {**n.labels(app, n.SENTINEL), n.LABEL_REDIS_DNS: "true"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": [{"name": "config", "emptyDir": {}}],
                    "affinity": _spread(app, n.SENTINEL),
                },
            },
        },
    }


def disruption_budget(app: str, namespace: str, uid: str, component: str, name: str) -> Manifest:
    """At most one pod of the component evicted at a time (``kubectl drain``, the Eviction
    API); named as the workload it covers."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(app, namespace, uid, name, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": n.selector(app, component)}},
    }


def children(app: str, namespace: str, uid: str, spec: Spec) -> list[Manifest]:
    """Every object applied for this spec, in apply order (Redis before its users)."""
    out: list[Manifest] = []
    if "managed" in (spec.get("redis") or {}):
        out += [
            redis_service(app, namespace, uid, spec),
            redis_statefulset(app, namespace, uid, spec),
            disruption_budget(app, namespace, uid, n.REDIS, n.redis_name(app)),
        ]
        if redis_replicas(spec):
            out += [
                redis_sentinel_statefulset(app, namespace, uid, spec),
                disruption_budget(app, namespace, uid, n.SENTINEL, n.sentinel_name(app)),
            ]
    out += [
        protocol_service(app, namespace, uid, spec),
        protocol_deployment(app, namespace, uid, spec),
        disruption_budget(app, namespace, uid, n.PROTOCOL, n.protocol_name(app)),
    ]
    if wants_workers(spec):
        out += [
            worker_deployment(app, namespace, uid, spec),
            disruption_budget(app, namespace, uid, n.WORKER, n.worker_name(app)),
        ]
    return out


def stale_children(spec: Spec) -> list[tuple[str, str]]:
    """(kind, component) of children a spec no longer wants (managed Redis switched off,
    with its Sentinels); ``names.stale_child_name`` names them. The CRD keeps
    ``managed.replicas`` as it was created, so a managed spec never drops its Sentinels.
    An ASGI project without background channels has no workers."""
    stale = []
    if not wants_workers(spec):
        stale = [("PodDisruptionBudget", n.WORKER), ("Deployment", n.WORKER)]
    if "managed" in (spec.get("redis") or {}):
        return stale
    return [*stale, ("PodDisruptionBudget", n.SENTINEL), ("StatefulSet", n.SENTINEL),
            ("PodDisruptionBudget", n.REDIS), ("StatefulSet", n.REDIS),
            ("Service", n.REDIS)]  # fmt: skip


def secret(app: str, namespace: str, uid: str, password: str, session_key: str) -> Manifest:
    """Generated once: the managed shards' password and the session-signing key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(app, namespace, uid, n.secret_name(app), "secrets"),
        "type": "Opaque",
        "stringData": {n.SECRET_PASSWORD_KEY: password, n.SECRET_SESSION_KEY: session_key},
    }


# The migration Job's component label; its pods run spec.migrate with the workers' pod
# settings. Two tries, ten minutes at most, kept a day after it finished (its pod's log
# is read when it fails; the operator deletes the app's older Jobs itself).
MIGRATE = "migrate"
MIGRATE_BACKOFF_LIMIT = 1
MIGRATE_DEADLINE_SECONDS = 600
MIGRATE_TTL_SECONDS = 86400


def migrate_job(app: str, namespace: str, uid: str, spec: Spec, job: str, digest: str) -> Manifest:
    """The Job that runs ``spec.migrate`` in the new image before any worker of it starts:
    the worker's image, env, identity and security context (no ServiceAccount token unless
    spec.serviceAccountName), ``restartPolicy: Never``."""
    workers = spec.get("workers") or {}
    container = {
        "name": MIGRATE,
        "image": spec["image"],
        "imagePullPolicy": spec.get("imagePullPolicy", "IfNotPresent"),
        "command": [str(part) for part in spec["migrate"]],
        "env": app_env(app, namespace, spec),
        "resources": workers.get("resources") or {},
        "securityContext": _security_context(),
    }
    meta = _meta(app, namespace, uid, job, MIGRATE)
    meta["annotations"] = {f"{n.GROUP}/migration": digest}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": MIGRATE_BACKOFF_LIMIT,
            "activeDeadlineSeconds": MIGRATE_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": MIGRATE_TTL_SECONDS,
            "template": {
                "metadata": {"labels": n.labels(app, MIGRATE)},
                "spec": {
                    **pod_identity(spec),
                    "securityContext": pod_security_context(),
                    "restartPolicy": "Never",
                    "containers": [container],
                },
            },
        },
    }
