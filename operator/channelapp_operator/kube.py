"""The few Kubernetes API calls the operator makes, over the official client.

The client is synchronous; async callers go through :func:`asyncio.to_thread`.
Server-side apply is a PATCH with ``application/apply-patch+yaml`` (JSON is
YAML), which the generic ``call_api`` sends for any kind.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from channelapp_operator import names as n

# kind -> (API path prefix, plural)
_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Service": ("/api/v1", "services"),
    "Secret": ("/api/v1", "secrets"),
    n.KIND: (f"/apis/{n.GROUP}/{n.VERSION}", n.PLURAL),
}


class SecretMissing(LookupError):
    """A password Secret, or its key, does not exist (not an authentication failure)."""


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = _KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class Kube:
    def __init__(self, api: ApiClient | None = None) -> None:
        self.api = api or ApiClient()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
            if content_type == "application/apply-patch+yaml":
                body = json.dumps(body)
        params = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params)
        response.read()
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason, body=response.data)
        return json.loads(response.data) if response.data else None

    def apply(self, manifest: dict[str, Any], *, manager: str = n.MANAGER) -> dict[str, Any]:
        """Server-side apply; the operator's manager wins conflicts on the fields it lists."""
        meta = manifest["metadata"]
        return self._call(
            "PATCH",
            _path(manifest["kind"], meta["namespace"], meta["name"]),
            manifest,
            query=[("fieldManager", manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def exists(self, path: str) -> bool:
        """Whether GET ``path`` finds an object (404: no; other errors raise)."""
        try:
            self._call("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, manifest: dict[str, Any]) -> bool:
        """Create unless it exists; True when created."""
        meta = manifest["metadata"]
        try:
            self._call("POST", _path(manifest["kind"], meta["namespace"]), manifest)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self._call("DELETE", _path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def events_for(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """Core Events about one object (the controllers' FailedCreate, for instance)."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        found = self._call(
            "GET", f"/api/v1/namespaces/{namespace}/events", query=[("fieldSelector", selector)]
        )
        return list((found or {}).get("items") or [])

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """A Secret's value; :class:`SecretMissing` says whether the Secret or its key is absent."""
        secret = self.get("Secret", namespace, name)
        if secret is None:
            raise SecretMissing(f"secret {namespace}/{name} not found")
        raw = (secret.get("data") or {}).get(key)
        if raw is None:
            raise SecretMissing(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(raw).decode()

    def scale_workers(self, namespace: str, name: str, replicas: int) -> None:
        """Set the worker Deployment's replicas as the autoscaler's field manager."""
        self.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas},
            },
            manager=n.SCALER_MANAGER,
        )

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._call(
            "PATCH",
            f"/apis/{n.GROUP}/{n.VERSION}/namespaces/{namespace}/{n.PLURAL}/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
