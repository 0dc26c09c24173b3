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

REDIS_PORT = 6379
WORKER_METRICS_PORT = 9100
SECRET_PASSWORD_KEY = "redis-password"
SECRET_SESSION_KEY = "secret-key"


def protocol_name(app: str) -> str:
    return f"{app}-protocol"


def worker_name(app: str) -> str:
    return f"{app}-worker"


def redis_name(app: str) -> str:
    return f"{app}-redis"


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
