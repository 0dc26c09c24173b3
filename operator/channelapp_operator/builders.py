"""Child objects of a ChannelApp, built as plain manifests (pure functions, no I/O).

Everything here is applied with server-side apply under the operator's field
manager, so a manifest lists exactly the fields the operator owns. The worker
Deployment leaves ``spec.replicas`` out: the autoscaler owns that field.
"""

from __future__ import annotations

from typing import Any

from channelapp.layer.keyspace import app_prefix

from channelapp_operator import names as n
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
    return [f"redis://{host}-{i}.{host}.{namespace}.svc:{n.REDIS_PORT}/0" for i in range(shards)]


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


def app_env(app: str, namespace: str, spec: Spec) -> list[dict[str, Any]]:
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
    env.extend(spec.get("env") or [])
    return env


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
    spec: Spec,
    args: list[str],
    env: list[dict[str, Any]],
    port: tuple[str, int],
    resources: dict[str, Any] | None,
) -> dict[str, Any]:
    """A container of the app image; probes hit the /readyz and /healthz of its one port."""
    port_name, number = port
    return {
        "name": name,
        "image": spec["image"],
        "imagePullPolicy": spec.get("imagePullPolicy", "IfNotPresent"),
        "args": args,
        "env": env,
        "ports": [{"name": port_name, "containerPort": number, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port_name}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port_name}, "periodSeconds": 10},
        "resources": resources or {},
        "securityContext": _security_context(),
    }


def protocol_deployment(app: str, namespace: str, uid: str, spec: Spec) -> Manifest:
    proto = spec.get("protocol") or {}
    port = int(proto.get("port", 8000))
    drain = int(proto.get("drainSeconds", DRAIN_SECONDS_DEFAULT))
    env = [
        # On SIGTERM sockets are closed with 1012 spread over this window (after preStop).
        {"name": "CHANNELAPP_DRAIN_SECONDS", "value": str(drain)},
        *app_env(app, namespace, spec),
    ]
    container = _app_container(
        "protocol",
        spec,
        ["protocol", spec["app"], "--host", "0.0.0.0", "--port", str(port)],
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
    container = _app_container(
        "worker",
        spec,
        ["worker", spec["app"], "--metrics-host", "0.0.0.0", "--metrics-port",
         str(n.WORKER_METRICS_PORT)],
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


def redis_service(app: str, namespace: str, uid: str) -> Manifest:
    """Headless Service giving each shard pod a stable DNS name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app, namespace, uid, n.redis_name(app), n.REDIS),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": n.selector(app, n.REDIS),
            "ports": [{"name": "redis", "port": n.REDIS_PORT, "targetPort": "redis"}],
        },
    }


def redis_statefulset(app: str, namespace: str, uid: str, spec: Spec) -> Manifest:
    """Independent Redis servers, one per shard (no replication: a channel lives on one shard)."""
    managed = spec["redis"]["managed"]
    container = {
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
        "env": [
            {
                "name": "REDIS_PASSWORD",
                "valueFrom": {
                    "secretKeyRef": {"name": n.secret_name(app), "key": n.SECRET_PASSWORD_KEY}
                },
            }
        ],
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
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 999,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(app, namespace, uid, n.redis_name(app), n.REDIS),
        "spec": {
            "serviceName": n.redis_name(app),
            "replicas": int(managed.get("shards", 1)),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": n.selector(app, n.REDIS)},
            "template": {
                "metadata": {"labels": n.labels(app, n.REDIS)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
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
            redis_service(app, namespace, uid),
            redis_statefulset(app, namespace, uid, spec),
            disruption_budget(app, namespace, uid, n.REDIS, n.redis_name(app)),
        ]
    out += [
        protocol_service(app, namespace, uid, spec),
        protocol_deployment(app, namespace, uid, spec),
        disruption_budget(app, namespace, uid, n.PROTOCOL, n.protocol_name(app)),
        worker_deployment(app, namespace, uid, spec),
        disruption_budget(app, namespace, uid, n.WORKER, n.worker_name(app)),
    ]
    return out


def stale_children(spec: Spec) -> list[tuple[str, str]]:
    """(kind, component) of children a spec no longer wants (managed Redis switched off)."""
    if "managed" in (spec.get("redis") or {}):
        return []
    return [("PodDisruptionBudget", n.REDIS), ("StatefulSet", n.REDIS), ("Service", n.REDIS)]


def secret(app: str, namespace: str, uid: str, password: str, session_key: str) -> Manifest:
    """Generated once: the managed shards' password and the session-signing key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(app, namespace, uid, n.secret_name(app), "secrets"),
        "type": "Opaque",
        "stringData": {n.SECRET_PASSWORD_KEY: password, n.SECRET_SESSION_KEY: session_key},
    }
