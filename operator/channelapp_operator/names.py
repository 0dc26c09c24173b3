"""Names, labels and field managers the operator gives the objects it owns."""

from __future__ import annotations

GROUP = "channelapp.dev"
VERSION = "v1alpha1"
PLURAL = "channelapps"
KIND = "ChannelApp"

MANAGER = "channelapp-operator"
# The autoscaler owns the worker Deployment's spec.replicas under its own field
# manager, so re-applying the Deployment never resets the scaled count.
SCALER_MANAGER = "channelapp-autoscaler"
# Field manager of the plain create that makes an absent child (then left to the apply).
CREATE_MANAGER = "channelapp-operator-create"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_APP = "channelapp.dev/app"

PROTOCOL = "protocol"
WORKER = "worker"
REDIS = "redis"
SENTINEL = "redis-sentinel"
# Replicated managed Redis: the shard pods and the Sentinel pods carry this label, and the
# headless Service NAME-redis selects on it, so every one of them has a stable DNS name
# under that one Service (no other Service name is taken: see sentinel_name).
LABEL_REDIS_DNS = "channelapp.dev/redis-dns"

REDIS_PORT = 6379
SENTINEL_PORT = 26379
WORKER_METRICS_PORT = 9100
SECRET_PASSWORD_KEY = "redis-password"
SECRET_SESSION_KEY = "secret-key"


def protocol_name(app: str) -> str:
    return f"{app}-protocol"


def worker_name(app: str) -> str:
    return f"{app}-worker"


def redis_name(app: str) -> str:
    return f"{app}-redis"


def sentinel_name(app: str) -> str:
    """The Sentinel StatefulSet and its PodDisruptionBudget (no Service: its pods are named
    under the headless Service NAME-redis). NAME-redis-sentinel never equals another app's
    child: a StatefulSet or budget of app Y is Y-redis, Y-protocol, Y-worker or
    Y-redis-sentinel."""
    return f"{app}-redis-sentinel"


def stale_child_name(app: str, component: str) -> str:
    """The name of a child ``builders.stale_children`` lists: the Redis ones (StatefulSet,
    Service, budget) are NAME-redis, the Sentinels' NAME-redis-sentinel, the workers'
    NAME-worker, others NAME."""
    names = {REDIS: redis_name(app), SENTINEL: sentinel_name(app), WORKER: worker_name(app)}
    return names.get(component, app)


def redis_master_name(shard: int) -> str:
    """The master name Sentinel knows shard ``shard`` by (each app has its own Sentinels)."""
    return f"shard-{shard}"


def secret_name(app: str) -> str:
    return f"{app}-secrets"


def service_name(app: str) -> str:
    return app


def labels(app: str, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: "channelapp",
        LABEL_INSTANCE: app,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_APP: app,
    }


def selector(app: str, component: str) -> dict[str, str]:
    return {LABEL_INSTANCE: app, LABEL_COMPONENT: component}
